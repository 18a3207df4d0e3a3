"""Hostile commits and proposals from a member, through core/mls/group (fuzz/mls_group_targets.py):
hypothesis builds proposal lists (Adds, Removes of any index, Updates, PSKs of both kinds with good
and bad nonces, group context extensions, ExternalInit, unknown types, references that were never
sent) with and without a path; Alice signs and tags them, so Bob's checks behind the signature
are what decides. Each is refused with a RemoteProtocolError or staged, never another exception;
and only a commit whose confirmation tag is right (the seeds') is ever staged."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonet.core.mls.extensions import Extension
from sonet.core.mls.group import QueuedProposal, StagedCommit
from sonet.core.mls.messages import (
    Commit,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    ProposalRef,
    Remove,
    UnknownProposal,
    Update,
)
from sonet.core.mls.psk import PreSharedKeyID, ResumptionPSKUsage
from fuzz.mls_group_targets import MLS_GROUP_TARGETS, _world

TARGETS = {t.name: t for t in MLS_GROUP_TARGETS}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SEED_COMMITS = [Commit.from_bytes(c) for c in _world().commits]
_ADD = next(p for c in _SEED_COMMITS for p in c.proposals if not isinstance(p, ProposalRef))
_PATH = next(c.path for c in _SEED_COMMITS if c.path is not None)

_indices = st.sampled_from([0, 1, 2, 3, 7, 2**32 - 1])
_nonces = st.sampled_from([bytes(32), bytes(31), b""])
_psk_ids = st.one_of(
    st.builds(PreSharedKeyID.external, st.sampled_from([b"a psk id", b"unknown"]), _nonces),
    st.builds(
        PreSharedKeyID.resumption,
        st.sampled_from(list(ResumptionPSKUsage)),
        st.sampled_from([b"fuzzed group", b"another"]),
        st.sampled_from([0, 1, 2, 2**64 - 1]),
        _nonces,
    ),
)
_extensions = st.lists(
    st.builds(Extension, st.sampled_from([1, 2, 3, 4, 5, 0xFF00, 0x0A0A]), st.binary(max_size=8)),
    max_size=3,
    unique_by=lambda e: e.extension_type,
).map(tuple)
_proposals: st.SearchStrategy[Proposal] = st.one_of(
    st.just(_ADD),
    st.builds(Remove, _indices),
    st.builds(PreSharedKey, _psk_ids),
    st.builds(GroupContextExtensions, _extensions),
    st.builds(ExternalInit, st.binary(max_size=40)),
    st.just(Update(_world().bob.key_package.leaf_node)),
    st.builds(UnknownProposal, st.sampled_from([8, 0x0A0A, 0xFFFF]), st.binary(max_size=4)),
)
_proposal_or_refs: st.SearchStrategy[ProposalOrRef] = st.one_of(_proposals, st.builds(ProposalRef, st.binary(max_size=33)))


@FUZZ
@given(st.lists(_proposal_or_refs, max_size=4), st.booleans())
def test_a_members_commit_is_refused_cleanly_or_staged_only_with_its_tag(proposals: list[ProposalOrRef], with_path: bool) -> None:
    commit = Commit(tuple(proposals), _PATH if with_path else None)
    result: Any = TARGETS["mls-group-commit"](commit.to_bytes())  # raises on another exception
    if result is not None:
        assert isinstance(result, StagedCommit) and commit in _SEED_COMMITS


@FUZZ
@given(_proposals)
def test_a_members_proposal_is_refused_cleanly_or_queued(proposal: Proposal) -> None:
    result = TARGETS["mls-group-proposal"](proposal.to_bytes())
    assert result is None or isinstance(result, QueuedProposal)


def test_the_seed_commits_stage() -> None:
    """The property above is not vacuous: the seeds, with their real tags, are staged."""
    staged = [TARGETS["mls-group-commit"](c.to_bytes()) for c in _SEED_COMMITS]
    assert staged and all(isinstance(s, StagedCommit) for s in staged)
