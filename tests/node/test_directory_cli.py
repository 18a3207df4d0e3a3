"""`sonet-node directory head` and the directory line of `sonet-node status`, through ``main()``
against a running in-process node (the CLI reads the store while the node runs) and a node that
never ran."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import trio

from sonet.cli_output import iso_ms
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.keydir import cosign, verify_head
from sonet.node.app import DB_FILE
from sonet.node.cli import main

from .conftest import HANG_S, NODE_NAME, RunningNode

BETA = "beta.example"


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 1 and out == "", result
    [line] = err.strip().splitlines()
    assert line.startswith("sonet-node: error: ") and "Traceback" not in err
    return line


async def cosigned_by_beta(at: RunningNode) -> bytes:
    """Beta's (valid) cosignature of the node's newest head, kept as the node would keep it."""
    async with at.store() as store:
        row = await store.latest_head()
        assert row is not None
        head = verify_head(row.head, node_key=at.identity.public, node=NODE_NAME)
        raw = cosign(SigningKey.generate(CryptoMode.HYBRID, os.urandom), witness=BETA, head=head, now=head.at + 5)
        await store.add_cosignature(size=row.size, witness=BETA, cosignature=raw)
    return raw


async def test_directory_head_prints_the_newest_signed_head_and_its_cosignatures(
    running: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        await running.enroll("alice")
        await running.enroll("bob")
        cosignature = await cosigned_by_beta(running)
        data = running.data_dir

        code, out, _ = await trio.to_thread.run_sync(cli, capsys, "directory", "head", "--data", data, "--json")
        assert code == 0
        shown = json.loads(out)
        head = verify_head(bytes.fromhex(shown["signed_head"]), node_key=running.identity.public, node=NODE_NAME)
        assert (shown["node"], shown["tree_size"], shown["root_hash"], shown["signed_at"]) == (
            NODE_NAME, 2, head.root.hex(), iso_ms(head.at)
        )
        assert head.size == 2
        assert shown["cosignatures"] == [
            {
                "witness": BETA,
                "tree_size": 2,
                "root_hash": head.root.hex(),
                "cosigned_at": iso_ms(head.at + 5),
                "cosignature": cosignature.hex(),
            }
        ]

        code, out, _ = await trio.to_thread.run_sync(cli, capsys, "directory", "head", "--data", data)
        assert code == 0
        first, second = out.strip().splitlines()
        assert first.startswith(f"{NODE_NAME}: tree size 2, root {head.root.hex()}, signed ")
        assert second.strip().startswith(f"cosigned by {BETA} at ")

        code, out, _ = await trio.to_thread.run_sync(cli, capsys, "status", "--data", data, "--json")
        assert code == 0
        assert json.loads(out)["directory"] == {"tree_size": 2, "root_hash": head.root.hex(), "cosignatures": 1}
        code, out, _ = await trio.to_thread.run_sync(cli, capsys, "status", "--data", data)
        assert f"directory: tree size 2, root {head.root.hex()[:16]}…, 1 cosignature" in out.splitlines()


def test_directory_head_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "nowhere does not exist" in error_line(cli(capsys, "directory", "head", "--data", tmp_path / "nowhere"))

    data = tmp_path / "node"  # a node that never ran has not signed a head yet
    assert cli(capsys, "init", "--data", data, "--name", NODE_NAME, "--listen", "127.0.0.1:0")[0] == 0
    assert "has no signed head yet" in error_line(cli(capsys, "directory", "head", "--data", data))
    code, out, _ = cli(capsys, "directory", "head", "--data", data, "--json")
    assert code == 1 and "has no signed head yet" in json.loads(out)["error"]["message"]
    code, out, _ = cli(capsys, "status", "--data", data, "--json")
    assert code == 0 and json.loads(out)["directory"] is None

    with closing(sqlite3.connect(data / DB_FILE)) as conn, conn:
        conn.execute("INSERT INTO directory_heads (size, root, head) VALUES (0, ?, ?)", (bytes(32), b"not a head"))
    assert "does not check out" in error_line(cli(capsys, "directory", "head", "--data", data))

    assert main(["directory", "head", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: sonet-node directory head")
