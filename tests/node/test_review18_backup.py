"""Review of ``sonet-node backup`` / ``restore``: a PostgreSQL node is refused in one line that
says why (not as a lost node.db), and hostile backups are refused before anything is written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sonet.node.config import CONFIG_FILE, NodeConfig

from .cli_kit import error_line, init, json_error, run


def test_backup_of_a_postgresql_node_says_so_without_the_password(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = init(capsys, tmp_path / "node")
    url = "postgresql://sonet:s3cret@127.0.0.1:1/sonet"
    (data / CONFIG_FILE).write_text(replace(NodeConfig.load(data), storage_database=url).to_toml())
    assert NodeConfig.load(data).storage_database == url
    (data / "node.db").unlink()  # a PostgreSQL node has none
    line = error_line(run(capsys, "backup", "--data", data, tmp_path / "b"), "PostgreSQL", "pg_dump")
    assert "s3cret" not in line and "missing" not in line
    assert json_error(run(capsys, "backup", "--data", data, tmp_path / "b", "--json"))["code"] == "backup_error"
    assert not (tmp_path / "b").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]
