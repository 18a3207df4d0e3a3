"""Texts that wait on the device: a send whose recipient's keys cannot be fetched now (its node
is down, busy, or its directory head not witnessed yet) is kept, sealed at rest, as "pending"
(client/state_pending.py) instead of failing, and sent by itself the next time the device
connects to its home node, before the command's own work (as Signal and WhatsApp clients do).

Rules:
- Only a "not now" waits (``WAIT_CODES``); a definite answer (no such account, an identity key
  that changed, a refused crypto mode) fails the send at once, or a waiting text for good.
- Texts to one recipient go in the order they were written: once one of them still cannot go,
  the later ones wait behind it, and a new text to that recipient joins the queue.
- A text goes with the id it got when it was written. If the device stops after the home node
  accepted it but before the state said so, the next attempt sends the same id again, and the
  node keeps only the first (mailboxes and outboxes deduplicate by id; the recipient's device
  too): it is never delivered twice.
- At most ``MAX_PENDING`` texts and ``MAX_PENDING_BYTES`` wait per device; one that waited
  ``PENDING_TTL_MS`` (30 days, the envelope lifetime) is marked failed ("expired"), never
  dropped without a word.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sonet.core.errors import LocalProtocolError, ProtocolError

from .connection import TRANSIENT_LOOKUP_CODES, NodeError
from .state import DeviceState, PendingSend
from .state_pending import MAX_PENDING, MAX_PENDING_BYTES, PendingFull

__all__ = ["WAIT_CODES", "PENDING_TTL_MS", "MAX_PENDING", "MAX_PENDING_BYTES", "PendingFull", "waits", "send_pending", "expire_pending",
           "not_behind_waiting"]

#: failures after which a text waits: the lookups' "not now" (client/connection.py) without the
#: two that need the user (a node key that changed) or are a definite answer (a wrong node
#: key), plus the recipient's devices changing while we sent (client/sdk.py), plus the home
#: node's storage budgets (its outbox towards a node that is down is full, this device holds
#: its share of undelivered messages, the node's disk is within its reserve)
WAIT_CODES = (TRANSIENT_LOOKUP_CODES - {"node_key_changed", "bad_node_key"}) | {"devices_changing", "outbox_full", "sender_full", "disk_full"}
#: and a message request over its allowance (it refills; once the recipient answers, we are a
#: contact and the text goes as one)
WAIT_CODES = WAIT_CODES | {"message_request_limit"}

PENDING_TTL_MS = 30 * 24 * 3600 * 1000

#: (pending text) -> (recipient devices it was encrypted for, state for ``sent``)
SendOne = Callable[[PendingSend], Awaitable[tuple[int, str]]]


def not_behind_waiting(recipient: str, mode: str, waiting: tuple[str, str]) -> LocalProtocolError:
    """A message sent in a crypto mode asked for (``--crypto-mode``) when an earlier one to the
    same recipient waits on the device: it cannot join the queue, because what waits goes out in
    the default mode (a waiting entry keeps no mode); so it is refused, not sent in another mode."""
    return LocalProtocolError(
        f"not sent: a message written before to {recipient} still waits on this device ({waiting[1]}), and one in crypto mode "
        f"{mode} cannot wait behind it (what waits goes out in the mode both devices' keys allow); send it once `sonet sent` "
        "shows the earlier one went, or without --crypto-mode to queue it after it",
        code="crypto_mode_refused",
    )


def waits(exc: Exception) -> bool:
    """Whether a failed send is worth trying again later rather than failing now."""
    return isinstance(exc, (NodeError, ProtocolError)) and exc.code in WAIT_CODES


async def send_pending(state: DeviceState, send_one: SendOne, now: int) -> list[str]:
    """Try every waiting text once, oldest first; returns a line for the user per text that was
    sent, failed or expired (those that still wait say nothing: ``sonet sent`` shows them).
    A failure of the connection itself (ConnectError, a cancelled command) propagates and
    leaves the rest waiting as they were."""
    notes = expire_pending(state, now)
    blocked: set[str] = set()
    for entry in state.pending_sends():
        if entry.recipient in blocked:
            continue  # an earlier text to them still waits: keep the order
        try:
            devices, sent_state = await send_one(entry)
        except (NodeError, ProtocolError) as exc:
            code = exc.code
            if waits(exc):
                state.pending_attempted(entry.id, now, code, str(exc))
                blocked.add(entry.recipient)
            else:
                state.pending_failed(entry.id, code, str(exc))
                notes.append(f"could not send the waiting message {entry.id.hex()} to {entry.recipient}: {exc}")
            continue
        state.pending_sent(entry.id, devices=devices, state=sent_state)
        notes.append(f"sent the message to {entry.recipient} that waited on this device; id {entry.id.hex()}")
    return notes


def expire_pending(state: DeviceState, now: int) -> list[str]:
    """Mark the texts that waited ``PENDING_TTL_MS`` failed ("expired"); a line for each."""
    notes = []
    for entry in state.pending_sends():
        if now >= entry.created + PENDING_TTL_MS:
            why = f"not sent: {entry.recipient} could not be reached for 30 days"
            state.pending_failed(entry.id, "expired", f"{why} (last: {entry.message or entry.code})")
            notes.append(f"gave up on the message {entry.id.hex()} to {entry.recipient}: it waited 30 days on this device")
    return notes
