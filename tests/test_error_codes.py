"""One registry of error codes (core/errors.py ``CODES``): docs/protocol.md's "Errors" table
lists exactly it, every code the source raises or sends is in it, and a refusal cannot carry a
code outside it (except one a peer sent, which is reported as such)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sonet.core.errors import CODES, LocalProtocolError, ProtocolError, Refusal, RemoteProtocolError, registered
from sonet.core.federation_api import OK, REFUSALS
from sonet.federation.errors import FederationError
from sonet.federation.ports import StoreFailure
from sonet.node.client_checks import RequestError
from sonet.node.linking import LinkError
from sonet.node.store import QuotaExceeded, StoreError
from tests.node.test_input_catalogue import DOCS, documented_errors

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("core", "transport", "client", "node", "federation", "sonet")
#: the command lines' own codes (usage, interrupted, ...) are documented with the CLIs
CLI_MODULES = ("client/cli.py", "node/cli.py")
#: a code literal where the source raises, sends or declares one
CODE_LITERAL = re.compile(
    r"""\bcode\s*=\s*"([a-z_]+)"|\b(?:RequestError|FederationError|LinkError|NodeError|Refusal)\(\s*"([a-z_]+)\""""
)


def source_codes() -> dict[str, list[str]]:
    """Every code literal in the source, with where it is."""
    found: dict[str, list[str]] = {}
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if str(path.relative_to(ROOT)) in CLI_MODULES or path.match("node/cli_*.py"):
                continue  # the command lines' own codes (sonet/cli_output.py), not the protocol's
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for match in CODE_LITERAL.finditer(line):
                    code = match.group(1) or match.group(2)
                    found.setdefault(code, []).append(f"{path.relative_to(ROOT)}:{number}")
    return found


def test_the_errors_section_lists_exactly_the_registry() -> None:
    documented, _ = documented_errors()
    assert OK in documented  # the outcome of a taken item: no refusal, so not a code of CODES
    assert documented - {OK} == set(CODES), (
        f"documented only: {sorted(documented - {OK} - set(CODES))}; registered only: {sorted(set(CODES) - documented)}"
    )


def test_each_code_is_registered_and_documented_once() -> None:
    # a dict literal keeps the last of two equal keys silently: two helpers adding one code
    source = (ROOT / "core" / "errors.py").read_text()
    registry = next(
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_CODES" for t in node.targets)
    )
    assert isinstance(registry, ast.Dict)
    keys = [k.value for k in registry.keys if isinstance(k, ast.Constant)]
    assert sorted(k for k in set(keys) if keys.count(k) > 1) == []
    section = DOCS.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert sorted(r for r in set(rows) if rows.count(r) > 1) == []


def test_every_code_in_the_source_is_registered() -> None:
    found = source_codes()
    assert len(found) > 40  # the pattern still finds the code literals
    stray = {code: where for code, where in found.items() if code not in CODES}
    assert not stray, f"codes not in core/errors.py CODES: {stray}"


def test_every_registered_code_is_used_somewhere() -> None:
    registry = re.compile(r"^_CODES = \{.*?^\}", re.S | re.M)  # the registry itself is no use
    text = "\n".join(registry.sub("", p.read_text()) for package in SOURCES for p in (ROOT / package).rglob("*.py"))
    unused = [code for code in CODES if f'"{code}"' not in text]
    assert not unused, f"registered but never raised or sent: {unused}"


def test_every_code_has_a_one_line_meaning() -> None:
    for code, meaning in CODES.items():
        assert re.fullmatch(r"[a-z][a-z_]*", code), code
        assert meaning and "\n" not in meaning and len(meaning) <= 100, code


def test_push_outcomes_are_registered_codes() -> None:
    assert set(REFUSALS) <= set(CODES)


@pytest.mark.parametrize(
    "refusal",
    [
        Refusal("unknown_account", "no account x@alpha.example on this node"),
        RequestError("not_registered", "this device is not registered on this node"),
        LinkError("link_busy", "too many devices are linking right now"),
        FederationError("unreachable", "cannot reach beta.example"),
        RemoteProtocolError("frame must be bytes"),
        LocalProtocolError("AEAD key must be 32 bytes"),
        QuotaExceeded("the mailbox is full"),
        StoreError("database is locked"),
    ],
)
def test_every_refusal_is_one_exception_type_with_a_registered_code(refusal: Refusal) -> None:
    assert isinstance(refusal, Refusal) and registered(refusal.code)
    assert "\n" not in str(refusal)


def test_the_families_keep_their_codes() -> None:
    assert RemoteProtocolError("x").code == "bad_input"
    assert LocalProtocolError("x").code == "local_error"
    assert QuotaExceeded("x").code == "mailbox_full"
    assert isinstance(StoreError("x"), StoreFailure)  # what federation catches from the store
    assert ProtocolError("x", code="verify_failed").code == "verify_failed"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Refusal("no_such_code", "x"),
        lambda: RequestError("not_regsitered", "a typo"),
        lambda: RemoteProtocolError("x", code="busy"),
        lambda: StoreError("x", code="disk_is_full"),
    ],
)
def test_a_refusal_with_an_unregistered_code_is_a_bug_caught_where_it_is_raised(make) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="unregistered error code"):
        make()


def test_a_code_another_node_sent_that_is_not_registered_is_reported_as_invalid() -> None:
    error = FederationError("busy", "beta.example refused the lookup")
    assert error.code == "invalid"
    assert str(error) == "beta.example refused the lookup (unknown error code 'busy')"
    assert FederationError("unknown_account", "no such account").code == "unknown_account"
