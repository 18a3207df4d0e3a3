"""Every MLS interop vector file kept in the repository has its kind, and the files no kind's own
test module runs in full (``messages.json`` and the passive-client files of the same
mls-implementations commit) pass here through the runner's own path (``load_check`` +
``run_cases``), every case, every cipher suite in them. The other files run in full in their
kind's module (test_tree_math.py, test_crypto_basics.py, test_treekem.py, ...), with the
tampered cases; running them twice would only cost time."""

from __future__ import annotations

import pytest

from sonet.core.mls.interop.runner import load_check, parse_cases, run_cases

from ... import vectors

#: kind -> the vector files (under tests/data/vectors/mls/) of that kind
FILES = {
    "tree-math": ["tree-math.json"],
    "deserialization": ["deserialization.json"],
    "crypto-basics": ["crypto-basics.json"],
    "secret-tree": ["secret-tree.json"],
    "message-protection": ["message-protection.json"],
    "key-schedule": ["key-schedule.json"],
    "psk-secret": ["psk_secret.json"],
    "transcript-hashes": ["transcript-hashes.json"],
    "welcome": ["welcome.json"],
    "tree-operations": ["tree-operations.json"],
    "tree-validation": ["tree-validation.json"],
    "treekem": ["treekem.json"],
    "messages": ["messages.json"],
    "passive-client": ["passive-client-welcome.json", "passive-client-handling-commit.json", "passive-client-random.json"],
}


def test_every_mls_vector_file_in_the_repository_has_a_kind() -> None:
    kept = {name for name in vectors.manifest() if name.startswith("mls/") and name.endswith(".json")}
    assert kept == {f"mls/{name}" for names in FILES.values() for name in names}


#: the kinds whose files run in full only here
RUN_HERE = ("messages", "passive-client")


@pytest.mark.parametrize(("kind", "name"), [(kind, name) for kind in RUN_HERE for name in FILES[kind]])
def test_the_runner_passes_every_case(kind: str, name: str) -> None:
    cases = parse_cases(vectors.path(f"mls/{name}").read_bytes())
    assert cases, f"{name} has no test case"
    check = load_check(kind)
    assert not isinstance(check, str), f"{kind}: {check}"
    result = run_cases(check, cases)
    assert result.failures == [], f"{kind} {name}: {result.failed} of {len(cases)} failed, first: {result.failures[:3]}"
    assert result.passed == len(cases)
