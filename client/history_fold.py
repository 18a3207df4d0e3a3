"""How reactions, edits and deletes change the messages they name (issue 17), for the history
(client/history.py) and for what a device erases when a delete arrives (client/gestures.py).

Rules (the same on every device, so every device shows the same conversation):
- Anyone in the conversation reacts: one reaction per account and emoji, the newest add or
  remove of it counts (by sent_at, then the order kept). Only the order of one account's own
  gestures matters (reactions of different accounts, edits and deletes of the author), and
  those arrive in the order sent, so every device folds alike.
- Only a message's author edits it (``may_change``): each edit's text becomes the text, the
  ones before are kept as its earlier versions, oldest first.
- Only the author deletes it for everyone, and only within ``DELETE_WINDOW_MS`` of when it was
  written (both times are the author's own clock: nobody else's claim is involved). A deleted
  message has no text, no versions and no reactions: a placeholder.
- A gesture naming a message this device does not hold is kept, not dropped: in a 1:1
  conversation the copy for one device and the gesture may come in either order (the sender's
  devices send on their own), and a gesture without its message changes nothing shown. It
  applies once the message arrives; anything it names that never arrives costs one row.
- One by anyone else, or a delete out of its window, changes nothing (``ignored``).
- Votes and closes name a poll as reactions name a message: anyone in the conversation votes,
  only the poll's author closes; they are collected here and counted by core/poll.py ``tally``
  (the same result from the same votes in any order). One naming a message that is not a poll
  is ``ignored``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sonet.core.content import DELETE, DELETE_WINDOW_MS, EDIT, POLL_CLOSE, REACTION, VOTE
from sonet.core.poll import Ballot, Close, Poll, Tally, tally

from .state_history import StoredMessage

__all__ = ["Reaction", "Folded", "Target", "may_change", "fold", "first_line"]


@dataclass(frozen=True, kw_only=True)
class Reaction:
    emoji: str
    count: int
    #: this account reacted so
    mine: bool


@dataclass(frozen=True, kw_only=True)
class Target:
    """What the rules need of a message: who wrote it, when, its text as written."""

    author: str
    at: int
    text: str
    #: a poll: what it asks (votes and closes are counted against it)
    poll: Poll | None = None


@dataclass(kw_only=True)
class Folded:
    text: str
    versions: list[str] = field(default_factory=list)
    deleted: bool = False
    #: (account, emoji) -> present, newest wins
    reacted: dict[tuple[str, str], bool] = field(default_factory=dict)
    #: gestures by someone not allowed to make them (or out of the window): not applied
    ignored: int = 0
    #: a poll's votes and closes (core/poll.py)
    ballots: list[Ballot] = field(default_factory=list)
    closes: list[Close] = field(default_factory=list)

    def tally(self, poll: Poll, author: str) -> Tally:
        return tally(poll, author, self.ballots, self.closes)

    def reactions(self, me: str) -> tuple[Reaction, ...]:
        """The reactions shown, most given first (then the one given or changed last, last)."""
        counts: dict[str, list[str]] = {}
        for (account, emoji), present in self.reacted.items():
            if present:
                counts.setdefault(emoji, []).append(account)
        shown = [Reaction(emoji=e, count=len(a), mine=me in a) for e, a in counts.items()]
        return tuple(sorted(shown, key=lambda r: -r.count))


def may_change(kind: str, *, by: str, at: int, author: str, written_at: int) -> bool:
    """Whether a gesture of ``kind`` by account ``by`` (made at ``at``) may change a message
    ``author`` wrote at ``written_at``."""
    if kind == REACTION:
        return True
    if by != author:
        return False
    return kind == EDIT or (kind == DELETE and at - written_at <= DELETE_WINDOW_MS)


def fold(targets: dict[bytes, Target], gestures: Iterable[StoredMessage], me: str) -> dict[bytes, Folded]:
    """The folded state of each of ``targets`` after ``gestures`` (oldest first; one of this
    device's own has ``sender`` "": it is ``me``'s)."""
    folded = {msg_id: Folded(text=t.text) for msg_id, t in targets.items()}
    for g in gestures:
        named = g.fields.get("refers_to")
        try:
            msg_id = bytes.fromhex(named) if isinstance(named, str) else b""
        except ValueError:
            continue
        target, state = targets.get(msg_id), folded.get(msg_id)
        if target is None or state is None:
            continue  # not held here (or not in this view): kept, changes nothing shown
        by = me if g.own else g.sender
        if state.deleted:
            continue
        if g.type in (VOTE, POLL_CLOSE):
            if target.poll is None:
                state.ignored += 1
            elif g.type == POLL_CLOSE:
                state.closes.append(Close(by=by, at=g.at))
            elif isinstance(g.fields.get("option"), int):
                state.ballots.append(Ballot(voter=by, at=g.at, id=g.id, option=g.fields["option"], remove=bool(g.fields.get("remove"))))
            continue
        if not may_change(g.type, by=by, at=g.at, author=target.author, written_at=target.at):
            state.ignored += 1
        elif g.type == REACTION and isinstance(g.fields.get("emoji"), str):
            state.reacted.pop((by, g.fields["emoji"]), None)  # re-inserted: the newest last
            state.reacted[(by, g.fields["emoji"])] = not g.fields.get("remove", False)
        elif g.type == EDIT and isinstance(g.fields.get("text"), str):
            state.versions.append(state.text)
            state.text = g.fields["text"]
        elif g.type == DELETE:
            state.deleted, state.text, state.versions, state.reacted = True, "", [], {}
    return folded


def first_line(text: str, width: int = 80) -> str:
    """A quote: the first line of ``text``, cut to ``width`` characters."""
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"
