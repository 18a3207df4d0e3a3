"""Location, contact card and event: what a ``location``, ``contact`` or ``event`` message
carries (core/content.py), each as one strict map.

- ``Location`` ``{lat, lon, accuracy, label}``: degrees times 10^7 as integers (canonical CBOR
  has no floats, and 1e-7 degrees is about a centimetre), ``accuracy`` in metres (0: unknown),
  ``label`` one line (may be empty).
- ``ContactCard`` ``{name, addresses}``: a display name (may be empty) and 1..``MAX_CARD_ADDRESSES``
  distinct Sonet addresses in normal form.
- ``Event`` ``{title, start, end, place}``: times in ms since the epoch (``end`` 0: none, else not
  before ``start``), ``place`` one line (may be empty).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .address import parse_address
from .content_map import check_map, failer, line_problem, ordered
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "Location", "ContactCard", "Event", "parse_degrees", "MAX_LABEL_BYTES", "MAX_CARD_NAME_BYTES", "MAX_CARD_ADDRESSES",
    "MAX_EVENT_TITLE_BYTES", "MAX_ACCURACY_M",
]  # fmt: skip

MAX_LABEL_BYTES = 256
MAX_CARD_NAME_BYTES = 128
MAX_CARD_ADDRESSES = 8
MAX_EVENT_TITLE_BYTES = 256
MAX_ACCURACY_M = 20_000_000  # half the Earth's circumference: anything more says nothing
_E7 = 10_000_000
_MAX_TIME_MS = 2**53  # beyond any date a calendar shows; and exact in JSON numbers


def _err(remote: bool) -> type[ProtocolError]:
    return RemoteProtocolError if remote else LocalProtocolError


def parse_degrees(text: str, *, limit: int) -> int:
    """Decimal degrees as a user types them ("52.5200") -> degrees times 10^7 (no float
    rounding); a clear error when it is not a number within ±``limit``."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or abs(value) > limit:
        raise LocalProtocolError(f"{text!r} is not a number of degrees within ±{limit}", code="bad_input")
    return int((value * _E7).to_integral_value())


@dataclass(frozen=True, kw_only=True, slots=True)
class Location:
    lat: int  # degrees * 10^7
    lon: int
    accuracy: int = 0  # metres; 0: unknown
    label: str = ""

    def to_map(self) -> dict[str, Any]:
        value = asdict(self)
        _check_location(value, LocalProtocolError)
        return ordered(value)

    @classmethod
    def from_map(cls, value: Any, *, remote: bool = True) -> "Location":
        return cls(**_check_location(value, _err(remote)))

    def degrees(self) -> tuple[str, str]:
        """(lat, lon) as decimal strings, exactly."""
        return str(Decimal(self.lat) / _E7), str(Decimal(self.lon) / _E7)


def _check_location(value: Any, err: type[ProtocolError]) -> dict[str, Any]:
    fail = failer("location", err)
    check_map(value, {"lat": int, "lon": int, "accuracy": int, "label": str}, fail)
    if not -90 * _E7 <= value["lat"] <= 90 * _E7:
        raise fail("latitude is within ±90 degrees")
    if not -180 * _E7 <= value["lon"] <= 180 * _E7:
        raise fail("longitude is within ±180 degrees")
    if not 0 <= value["accuracy"] <= MAX_ACCURACY_M:
        raise fail(f"accuracy is 0..{MAX_ACCURACY_M} metres")
    problem = line_problem(value["label"], "a label", max_bytes=MAX_LABEL_BYTES)
    if problem is not None:
        raise fail(problem)
    return dict(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactCard:
    name: str
    addresses: tuple[str, ...]

    def to_map(self) -> dict[str, Any]:
        value = {"name": self.name, "addresses": list(self.addresses)}
        _check_card(value, LocalProtocolError)
        return ordered(value)

    @classmethod
    def from_map(cls, value: Any, *, remote: bool = True) -> "ContactCard":
        return cls(**_check_card(value, _err(remote)))


def _check_card(value: Any, err: type[ProtocolError]) -> dict[str, Any]:
    fail = failer("contact card", err)
    check_map(value, {"name": str, "addresses": list}, fail)
    problem = line_problem(value["name"], "a name", max_bytes=MAX_CARD_NAME_BYTES)
    if problem is not None:
        raise fail(problem)
    addresses = value["addresses"]
    if not 0 < len(addresses) <= MAX_CARD_ADDRESSES:
        raise fail(f"a card holds 1..{MAX_CARD_ADDRESSES} addresses")
    for address in addresses:
        if type(address) is not str:
            raise fail("an address is a string")
        try:
            normal = str(parse_address(address, remote=err is RemoteProtocolError))
        except ProtocolError as exc:
            raise fail(str(exc)) from None
        if normal != address:
            raise fail("address is not in normal form")
    if len(set(addresses)) != len(addresses):
        raise fail("addresses repeat")
    return {"name": value["name"], "addresses": tuple(addresses)}


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    title: str
    start: int  # ms since the epoch
    end: int = 0  # 0: no end given
    place: str = ""

    def to_map(self) -> dict[str, Any]:
        value = asdict(self)
        _check_event(value, LocalProtocolError)
        return ordered(value)

    @classmethod
    def from_map(cls, value: Any, *, remote: bool = True) -> "Event":
        return cls(**_check_event(value, _err(remote)))


def _check_event(value: Any, err: type[ProtocolError]) -> dict[str, Any]:
    fail = failer("event", err)
    check_map(value, {"title": str, "start": int, "end": int, "place": str}, fail)
    for name, max_bytes, min_bytes in (("title", MAX_EVENT_TITLE_BYTES, 1), ("place", MAX_LABEL_BYTES, 0)):
        problem = line_problem(value[name], f"a {name}", max_bytes=max_bytes, min_bytes=min_bytes)
        if problem is not None:
            raise fail(problem)
    if not 0 <= value["start"] < _MAX_TIME_MS:
        raise fail("start out of range")
    if value["end"] != 0 and not value["start"] <= value["end"] < _MAX_TIME_MS:
        raise fail("end is 0 (none) or not before start")
    return dict(value)
