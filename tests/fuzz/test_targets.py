"""Every decoder reachable from the network, fed random and mutated input (fuzz/targets.py).

The property, checked by each target itself: the decoder returns the well-formed object it
promises or raises the error class (and code) its documentation names; never another exception,
never a hang (conftest.py's guard), never an allocation beyond ``MAX_ALLOCATION``.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sonet.core.client_api
import sonet.core.federation_api
import sonet.core.handshake
from sonet.core.errors import RemoteProtocolError
from sonet.core.wire import Frame, registered_frames
from fuzz.samples import frame_samples
from fuzz.targets import TARGETS, Finding, Target

from .conftest import budget
from .strategies import mutated_inputs, random_inputs

#: what one decode may allocate at its peak: far above any legitimate decode of the inputs
#: used here (the largest frames are 4 MiB), far below trouble
MAX_ALLOCATION = 64 * 1024 * 1024

#: seeds that are well-formed but cannot be valid in a fresh run (they answer a randomised
#: signature), or that are refusals on purpose (a HandshakeError)
_SEEDS_REFUSED = {
    "handshake-hello1": 1,
    "handshake-hello2": 1,
    "handshake-auth3": 2,
    "handshake-done4": 2,
    "handshake-responder-identity": 3,
    "handshake-initiator-identity": 3,
}


def run(target: Target, data: bytes) -> Any:
    """One input through ``target`` (which raises on a broken contract), memory measured."""
    tracemalloc.start()
    try:
        result = target(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_ALLOCATION, f"{target.name}: decoding {len(data)} bytes allocated {peak} bytes"
    assert result is None or isinstance(result, target.returns)
    return result


#: inputs that once broke a target's contract (found by these tests), refused now
REGRESSIONS = [
    # core/invite accepted a secret with characters outside base32, to be sent to the node
    ("invite", b"ytnbrvxvoe5k5hb5yfhslpeqeg7aioo4.`aaqeayeaudaocajbifqydiob4ibceqt"),
]


@pytest.mark.parametrize(("name", "data"), REGRESSIONS)
def test_regression(name: str, data: bytes) -> None:
    assert run(TARGETS[name], data) is None


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_valid_seeds_decode(name: str) -> None:
    target = TARGETS[name]
    corpus = target.corpus()
    accepted = [run(target, seed) is not None for seed in corpus]
    assert sum(accepted) == len(corpus) - _SEEDS_REFUSED.get(name, 0), accepted


@pytest.mark.slow  # the longest of the fuzz runs (hypothesis, every target): `make test`, not `make check`
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_random_input(name: str) -> None:
    target = TARGETS[name]
    inputs = random_inputs(target)  # built once: hypothesis validates a new strategy's whole tree

    @budget()
    @given(st.data())
    def check(data: st.DataObject) -> None:
        run(target, data.draw(inputs, label="input"))

    check()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutated_valid_input(name: str) -> None:
    target = TARGETS[name]
    inputs = mutated_inputs(target)

    @budget()
    @given(st.data())
    def check(data: st.DataObject) -> None:
        run(target, data.draw(inputs, label="input"))

    check()


@pytest.mark.parametrize("tag", sorted(frame_samples()))
def test_mutated_frame_of_each_tag(tag: int) -> None:
    target = TARGETS["frame"]
    inputs = mutated_inputs(target, [frame_samples()[tag]])

    @budget(scale=0.3)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        run(target, data.draw(inputs, label="input"))

    check()


def test_seeds_cover_every_frame_of_every_protocol() -> None:
    modules = (sonet.core.handshake, sonet.core.client_api, sonet.core.federation_api)
    frames = {cls.TAG for mod in modules for name in mod.__all__ if isinstance(cls := getattr(mod, name), type) and issubclass(cls, Frame)}
    protocol = {tag for tag, cls in registered_frames().items() if cls.__module__.startswith("sonet.core.")}
    assert frames and frames <= set(frame_samples()) == protocol


def _target(decode: Any, **overrides: Any) -> Target:
    settings = dict(name="broken", summary="", decode=decode, errors=(RemoteProtocolError,), seeds=list)
    return Target(**{**settings, **overrides})


def _raise(exc: BaseException) -> Any:
    def decode(data: bytes) -> Any:
        raise exc

    return decode


def test_a_broken_decoder_is_a_finding() -> None:
    """The property is not vacuous: each way of breaking the contract fails."""
    assert _target(_raise(RemoteProtocolError("bad")))(b"") is None
    with pytest.raises(KeyError):
        _target(_raise(KeyError("x")))(b"")
    with pytest.raises(Finding, match="undocumented error code"):
        _target(_raise(RemoteProtocolError("bad", code="unexpected_frame")), codes=frozenset({"bad_input"}))(b"")
    with pytest.raises(Finding, match="decoded into int"):
        _target(lambda data: 7, returns=bytes)(b"")
    with pytest.raises(AssertionError, match="allocated"):
        run(_target(lambda data: bytes(MAX_ALLOCATION)), b"")
