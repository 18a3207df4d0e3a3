"""Security events: the one seam through which transport, federation and node code report what
an operator should be able to audit later (refused handshakes, a peer with the wrong identity,
rate limiting, key-directory alarms), without knowing who listens.

``emit(kind, **fields)`` hands the event to the subscribers of the *current task's context*: the
node enters ``subscribed(callback)`` at the start of its run, and every task it spawns inherits
that (trio copies the context at spawn), so two nodes in one test process each hear only their
own events. With nobody subscribed ``emit`` is one ContextVar lookup and a return; a hot path
that would build costly fields first can ask ``listening()``.

Subscribers are plain synchronous callables ``callback(kind, fields)`` run on the emitter's
thread: they must be quick, must not raise and must not block (the audit log queues and writes
in batches). ``fields`` carries no secrets: addresses, peer names, fingerprints, codes, counts.
Field names by convention: ``code`` (the refusal's error code), ``limit`` (which rate limit),
``address`` (a source IP), ``peer`` (a node name), ``actor`` (an account or device fingerprint),
``kind`` (what sort of directory alarm).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = ["KINDS", "Subscriber", "emit", "listening", "subscribed", "subscribe", "unsubscribe"]

#: the named kinds; an unknown kind is a programming error (a typo would go unaudited)
KINDS = frozenset(
    {
        # a connection's handshake failed or was refused (fields: address, code)
        "handshake_refused",
        # the side that connected to this node ended the handshake: it refused this node's key
        # (code wrong_identity: it pinned another) or offer (fields: address, code)
        "refused_by_initiator",
        # a connection refused or evicted at accept (fields: address, code)
        "connection_refused",
        # a peer node proved an identity other than the one pinned for its name (fields: peer, ...)
        "wrong_identity",
        # requests refused by a rate limit (fields: actor, limit; summarised by the subscriber)
        "rate_limited",
        # the key directory saw a split view, a witness disagreed, a log did not extend (fields: peer, ...)
        "directory_alarm",
    }
)

#: ``callback(kind, fields)``
Subscriber = Callable[[str, Mapping[str, object]], None]

_subscribers: ContextVar[tuple[Subscriber, ...]] = ContextVar("sonet_security_subscribers", default=())


def emit(kind: str, /, **fields: object) -> None:
    """Report one security event to the subscribers of this context (none: nothing happens)."""
    subscribers = _subscribers.get()
    if not subscribers:
        return
    if kind not in KINDS:
        raise ValueError(f"unknown security event kind {kind!r}")
    for callback in subscribers:
        callback(kind, fields)


def listening() -> bool:
    """Whether anyone in this context hears ``emit`` (to skip building costly fields)."""
    return bool(_subscribers.get())


@contextmanager
def subscribed(callback: Subscriber) -> Iterator[None]:
    """Hear every event emitted in this context and in the tasks spawned from it, until exit."""
    token = subscribe(callback)
    try:
        yield
    finally:
        unsubscribe(token)


def subscribe(callback: Subscriber) -> Token[tuple[Subscriber, ...]]:
    """``subscribed`` without a block: hear events from now on in this context, until
    ``unsubscribe(token)`` (in the same context, in reverse order of subscribing)."""
    return _subscribers.set(_subscribers.get() + (callback,))


def unsubscribe(token: Token[tuple[Subscriber, ...]]) -> None:
    _subscribers.reset(token)
