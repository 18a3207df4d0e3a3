"""Write fresh_schema.py anew: ``python -m sonet.node.store.fresh_schema_gen`` after adding a
migration (tests/node/store/test_fresh_schema.py fails until it is done, and meanwhile new
databases run every migration, as before).

Why the script: running the ~160 statements of every migration on an empty file costs ~35 ms of
CPU (each DDL statement reads the growing schema again; a table rebuilt by a later migration is
built twice); the script builds the same database in ~8 ms, and nodes, tests and tools open many
new databases. It is written from a database the migrations built (``schema_script``), and
tests/node/store/test_fresh_schema.py checks that both give the same database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .migrations import LATEST_VERSION, migrate

HEADER = '''"""The SQLite schema at the latest version, as one script, for a new database (migrations.py).
Written by ``python -m sonet.node.store.fresh_schema_gen`` (its docstring says why); do not edit."""

# fmt: off
'''


def schema_script(conn: sqlite3.Connection) -> tuple[str, ...]:
    """The statements that build what ``conn`` holds: its schema in the order it was made
    (``sqlite_master``'s rowid: each object after those it refers to), then its rows (a
    migrated empty database holds a few counters). For fresh_schema.py."""
    objects = conn.execute(
        "SELECT name, type, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
    ).fetchall()
    statements = [sql for _, _, sql in objects]
    for name, kind, _ in objects:
        if kind == "table":
            for row in conn.execute(f'SELECT * FROM "{name}"'):  # noqa: S608 - names from sqlite_master
                statements.append(f'INSERT INTO "{name}" VALUES ({", ".join(_literal(v) for v in row)})')
    return tuple(statements)


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__} in a new database's rows")


def render() -> str:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(conn, fresh_schema=False)
        statements = schema_script(conn)
    finally:
        conn.close()
    lines = [HEADER, f"FRESH_VERSION = {LATEST_VERSION}", "", "FRESH_STATEMENTS: tuple[str, ...] = ("]
    lines += [f"    {statement!r}," for statement in statements]
    lines += [")", ""]
    return "\n".join(lines)


def main() -> None:
    path = Path(__file__).with_name("fresh_schema.py")
    path.write_text(render())
    print(f"wrote {path} (schema version {LATEST_VERSION})")


if __name__ == "__main__":
    main()
