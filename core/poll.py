"""Polls: what a ``poll`` message carries and how votes are tallied (core/content.py).

``Poll`` ``{question, options, multiple}``: a one-line question, 2..``MAX_POLL_OPTIONS`` distinct
one-line options, and whether a voter may choose several. Votes and the close are messages
that refer to the poll the way a reaction refers to a message (``refers_to``): ``vote``
``{refers_to, option, remove}`` chooses option ``option`` (its index) or, with ``remove``, takes
it back; ``poll_close`` ``{refers_to}`` ends the poll.

``tally`` is the one count every device makes from the votes and closes it holds (the rules are
here, in pure code, so every device counts alike):

- Each voter's ballots count in the order they were written (``at``, the voter's own clock;
  then the ballot's content id, so two devices holding the same ballots order them the same
  whatever order they came in). Only a voter's own order matters.
- A single-choice poll keeps a voter's newest choice (a vote replaces their earlier one); a
  multiple-choice poll keeps each option a voter chose and did not take back.
- Only the poll's author closes it; the earliest close by the author counts. A ballot written
  after it (by its ``at``) is not counted: a vote that arrives late but was cast before the
  close still counts, on every device that gets it.
- A ballot naming an option the poll does not have, or a close by anyone else, is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .content_map import check_map, failer, line_problem, ordered
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = ["Poll", "Ballot", "Close", "Tally", "tally", "MAX_POLL_OPTIONS", "MIN_POLL_OPTIONS", "MAX_QUESTION_BYTES", "MAX_OPTION_BYTES"]

MIN_POLL_OPTIONS = 2
MAX_POLL_OPTIONS = 10
MAX_QUESTION_BYTES = 512
MAX_OPTION_BYTES = 128


@dataclass(frozen=True, kw_only=True, slots=True)
class Poll:
    question: str
    options: tuple[str, ...]
    multiple: bool = False

    def to_map(self) -> dict[str, Any]:
        value = {"question": self.question, "options": list(self.options), "multiple": self.multiple}
        _check(value, LocalProtocolError)
        return ordered(value)

    @classmethod
    def from_map(cls, value: Any, *, remote: bool = True) -> "Poll":
        return cls(**_check(value, RemoteProtocolError if remote else LocalProtocolError))


def _check(value: Any, err: type[ProtocolError]) -> dict[str, Any]:
    fail = failer("poll", err)
    check_map(value, {"question": str, "options": list, "multiple": bool}, fail)
    problem = line_problem(value["question"], "a question", min_bytes=1, max_bytes=MAX_QUESTION_BYTES)
    if problem is not None:
        raise fail(problem)
    options = value["options"]
    if not MIN_POLL_OPTIONS <= len(options) <= MAX_POLL_OPTIONS:
        raise fail(f"a poll has {MIN_POLL_OPTIONS}..{MAX_POLL_OPTIONS} options")
    for option in options:
        if type(option) is not str:
            raise fail("an option is a string")
        problem = line_problem(option, "an option", min_bytes=1, max_bytes=MAX_OPTION_BYTES)
        if problem is not None:
            raise fail(problem)
    if len(set(options)) != len(options):
        raise fail("options repeat")
    return {"question": value["question"], "options": tuple(options), "multiple": value["multiple"]}


@dataclass(frozen=True, kw_only=True, slots=True)
class Ballot:
    """One ``vote`` message as the tally needs it."""

    voter: str  # the account that cast it
    at: int  # its sent_at (the voter's clock)
    id: bytes  # its content id: the tie-break of equal times
    option: int
    remove: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Close:
    """One ``poll_close`` message."""

    by: str
    at: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Tally:
    #: per option (in the poll's order): the voters who chose it, sorted
    voters: tuple[tuple[str, ...], ...]
    #: when the author closed it (their clock), None while open
    closed_at: int | None
    #: ballots and closes not counted (an option out of range, a close by someone else, a
    #: ballot after the close)
    ignored: int

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.voters)

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


def tally(poll: Poll, author: str, ballots: Iterable[Ballot], closes: Iterable[Close] = ()) -> Tally:
    """The result of ``poll`` (written by ``author``) from the ballots and closes held, in any
    order: the same set gives the same result."""
    ignored = 0
    closed_at: int | None = None
    for close in closes:
        if close.by != author:
            ignored += 1
        elif closed_at is None or close.at < closed_at:
            closed_at = close.at
    chosen: dict[str, set[int]] = {}
    for ballot in sorted(ballots, key=lambda b: (b.voter, b.at, b.id)):
        if not 0 <= ballot.option < len(poll.options) or (closed_at is not None and ballot.at > closed_at):
            ignored += 1
            continue
        mine = chosen.setdefault(ballot.voter, set())
        if ballot.remove:
            mine.discard(ballot.option)
        elif poll.multiple:
            mine.add(ballot.option)
        else:
            mine.clear()
            mine.add(ballot.option)
    voters = tuple(tuple(sorted(v for v, options in chosen.items() if i in options)) for i in range(len(poll.options)))
    return Tally(voters=voters, closed_at=closed_at, ignored=ignored)
