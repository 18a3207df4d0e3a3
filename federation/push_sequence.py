"""The per-link sequence of pushes (docs/protocol.md "Node ↔ node frames"): several pushes in
flight on one link, applied by the receiver in the order sent (the next one's write queued
behind the one before, so that they can share a group commit), answered in that order.

The dialler numbers its pushes 1, 2, ... in wire order (``Sending``). The receiver takes only
the push it expects (``Receiving``): one it takes (a ``PushResult``) moves it on to the next
number; one it refuses as a whole (an ``ErrorFrame``: rate_limited, unavailable, a storage
budget) does not, so every push sent after it is refused ``out_of_order`` and nothing of them
is taken: the pushes after a refused one are never applied before it. The dialler, seeing that
refusal, numbers its next push with the refused number again (a new *round*); the
``out_of_order`` answers of the pushes still on their way from the old round are expected and
change nothing. An ``out_of_order`` answer to a push of the current round means the two sides
disagree (a push of ours lost its answer to a bug, or the peer's state is off): the link is
closed, and the next one starts again at 1. A push's items are pushed again by their outbox
worker whatever happened to it; the receiver deduplicates what it took already.
"""

from __future__ import annotations

from sonet.core.client_api import ErrorFrame
from sonet.core.federation_api import Push, PushResult
from sonet.core.wire import Frame

from .ports import Queued

__all__ = ["OUT_OF_ORDER", "Sending", "Receiving"]

#: the refusal of a push that is not the next one the receiver expects on the link
OUT_OF_ORDER = "out_of_order"


class Sending:
    """The dialler's side: numbers pushes in the order they go out, follows their answers."""

    __slots__ = ("_next", "_round", "_sent")

    def __init__(self) -> None:
        self._next = 1
        self._round = 0
        #: request number -> (seq, round) of each push sent and not answered yet
        self._sent: dict[int, tuple[int, int]] = {}

    def number(self, push: Push) -> Push:
        """``push`` (renumbered already) with the next sequence number; call it when the push's
        turn on the socket has come (``SecureSocket.send_built``)."""
        seq, self._next = self._next, self._next + 1
        self._sent[push.request] = (seq, self._round)
        return Push(request=push.request, items=push.items, seq=seq)

    def answered(self, answer: Frame) -> str | None:
        """Follow one answer, in the order the answers came; a reason to close the link when it
        shows the two sides out of step, else None."""
        request = getattr(answer, "request", 0)
        sent = self._sent.pop(request, None)
        if sent is None:
            return None  # not a push's answer
        seq, round_ = sent
        if isinstance(answer, PushResult):
            return None
        if not isinstance(answer, ErrorFrame):
            return f"the peer answered push {seq} with {type(answer).__name__}"
        if answer.code == OUT_OF_ORDER:
            if round_ == self._round:
                return f"the peer is out of step with this link's pushes ({answer.message})"
            return None  # sent before an earlier refusal was known: expected
        if round_ != self._round:  # the receiver refuses those out_of_order, nothing else
            return f"the peer refused push {seq}, which it should not have considered ({answer.code})"
        # refused as a whole: the receiver still expects ``seq``; the next push carries it
        self._round += 1
        self._next = seq
        return None


class Receiving:
    """The receiver's side: which sequenced push it takes next on one link. Its pushes are taken
    one at a time in the order read (``serve_link``'s ordered lane), but a push's store write may
    still wait for its commit when the next one is taken: that one's write is queued ``after``
    it (the same group commit, or the next), and is not applied if it fails. Their answers go
    in the order read (``answer``): a push taken behind one that then failed is answered
    ``out_of_order`` (its write was not applied), and the sequence goes back to the failed one."""

    __slots__ = ("expected", "after", "_round", "_held")

    def __init__(self) -> None:
        #: the number of the next push taken
        self.expected = 1
        #: the store write of the last push taken (node/store's ``Queued``): the next one's
        #: write goes after it; None when none is pending in this round
        self.after: Queued | None = None
        self._round = 0
        #: a push refused as a whole before its write (rate limited, ...) whose answer has not
        #: gone yet: nothing is taken until it has (0: none)
        self._held = 0

    def refusal(self, push: Push) -> ErrorFrame | None:
        """The ``out_of_order`` refusal of a push that is not the next one; None to handle it."""
        if push.seq == 0 or (push.seq == self.expected and not self._held):
            return None
        if self._held:
            why = f"behind push {self._held}, which was refused"
            expected = self._held
        else:
            why = "a gap" if push.seq > self.expected else "an old or replayed number"
            expected = self.expected
        return ErrorFrame(
            request=push.request, code=OUT_OF_ORDER, message=f"push {push.seq} on this link is {why}: the next one taken is {expected}"
        )

    def take(self, push: Push, write: Queued | None) -> int:
        """``push`` (not refused) is taken, its write (None: it has none) queued ``after`` the
        previous one's: the next push is expected now, before this one's answer. Returns the
        round to give ``answer``."""
        if push.seq:
            self.expected = push.seq + 1
            if write is not None:
                self.after = write
        return self._round

    def hold(self, push: Push) -> int:
        """``push`` is refused as a whole before anything of it was queued: nothing more is
        taken until its answer went (``answer``). Returns the round to give ``answer``."""
        if push.seq:
            self._held = push.seq
        return self._round

    def answer(self, push: Push, round_: int, answer: Frame) -> Frame:
        """What to send for ``push`` (taken or held in ``round_``), handled into ``answer``:
        called for each in the order they were read. A push of an earlier round (taken behind
        one whose failure came since) is refused ``out_of_order``; a push not taken as a whole
        starts a new round: it is the next one expected again."""
        if not push.seq:
            return answer
        if round_ != self._round:
            return ErrorFrame(
                request=push.request,
                code=OUT_OF_ORDER,
                message=f"push {push.seq} on this link was behind a refused push: the next one taken is {self.expected}",
            )
        if not isinstance(answer, PushResult):
            self.expected = push.seq
            self._round += 1
            self._held = 0
            self.after = None  # the writes still queued were all after the failed one: not applied
        return answer
