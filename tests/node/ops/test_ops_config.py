"""node.toml [ops] listen: written by `sonet-node init --ops-listen`, checked by `config check`
and at start; absent, there is no operations listener."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sonet.node.config import ConfigError, NodeConfig

from ..cli_kit import error_line, init, json_error, json_lines, ok, run, snapshot


def test_init_writes_ops_listen_and_config_check_shows_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = init(capsys, tmp_path / "node", "--ops-listen", "127.0.0.1:9480")
    assert tomllib.loads((data / "node.toml").read_text())["ops"] == {"listen": "127.0.0.1:9480"}
    assert "operations on 127.0.0.1:9480" in ok(run(capsys, "config", "check", "--data", data)).out
    [line] = json_lines(run(capsys, "config", "check", "--data", data, "--json"))
    assert line["ops_listen"] == "127.0.0.1:9480"


def test_without_ops_listen_it_is_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = init(capsys, tmp_path / "node")
    assert "ops" not in tomllib.loads((data / "node.toml").read_text())
    [line] = json_lines(run(capsys, "config", "check", "--data", data, "--json"))
    assert "ops_listen" not in line


def test_init_refuses_a_bad_ops_listen_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "node"
    error_line(run(capsys, "init", "--data", data, "--name", "localhost", "--listen", "127.0.0.1:0", "--ops-listen", "nowhere"),
               "ops.listen", "invalid listen address 'nowhere'")
    assert snapshot(data) == {}
    json_error(run(capsys, "init", "--data", data, "--name", "localhost", "--listen", "127.0.0.1:7480",
                   "--ops-listen", "127.0.0.1:7480", "--json"), "the node's own listen address")


@pytest.mark.parametrize(
    ("ops", "fragment"),
    [
        ('listen = 9480', "ops.listen = 9480 must be a quoted string"),
        ('listen = "127.0.0.1:99999"', "invalid listen address"),
        ('lissen = "127.0.0.1:9480"', "did you mean 'listen'"),
    ],
)
def test_config_check_refuses_a_bad_ops_section(tmp_path: Path, capsys: pytest.CaptureFixture[str], ops: str, fragment: str) -> None:
    data = init(capsys, tmp_path / "node")
    with open(data / "node.toml", "a") as f:
        f.write(f"\n[ops]\n{ops}\n")
    error_line(run(capsys, "config", "check", "--data", data), fragment)


def test_to_toml_round_trips() -> None:
    config = NodeConfig(name="alpha.example", listen="127.0.0.1:7480", ops_listen="[::1]:9480")
    assert NodeConfig.from_dict(tomllib.loads(config.to_toml())) == config
    off = NodeConfig(name="alpha.example", listen="127.0.0.1:7480")
    assert NodeConfig.from_dict(tomllib.loads(off.to_toml())).ops_listen is None
    with pytest.raises(ConfigError, match=r"\[ops\] must be a table"):
        NodeConfig.from_dict({"name": "alpha.example", "listen": "127.0.0.1:7480", "ops": "127.0.0.1:9480"})
