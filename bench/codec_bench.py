"""The frame codec (core/wire.py) on the relay's hot frames: CPU µs (``time.process_time``) to
decode and to encode a federation ``Push`` of 256 envelopes (1 KiB bodies, random ids, each a
``Transit`` towards the recipient's node) and a ``Deliver`` of 128 (the node's batch,
node/client_session.py), every cap and check() included (``decode_frame`` with the endpoint's
frame set, ``encode_frame`` as the node sends); and the Push as the outbox sends it, its stored
items spliced in as they are (``wire.encoded``: types and msgspec's caps checked again, not
their check()s). Best of several rounds, each long enough to average the machine's noise.

Ceiling: the same bytes through msgpack's untyped C codec (``msgpack.unpackb`` / ``packb`` of
the same lists), with no types, caps or checks: the floor of any typed codec over msgpack.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import msgpack

__all__ = ["measure", "measure_with"]

PUSH_ENVELOPES = 256
DELIVER_ENVELOPES = 128
BODY_BYTES = 1024


def _cpu_us(fn: Callable[[], Any], seconds: float, rounds: int) -> float:
    """Best over ``rounds`` of the mean CPU µs per call, each round about ``seconds`` long."""
    best = float("inf")
    for _ in range(rounds):
        n = 0
        start = time.process_time()
        while True:
            fn()
            n += 1
            spent = time.process_time() - start
            if spent >= seconds:
                break
        best = min(best, spent / n * 1e6)
    return best


def _frames(wire: ModuleType, fed: ModuleType, api: ModuleType, env_mod: ModuleType) -> dict[str, Any]:
    def envelope(i: int) -> Any:
        return env_mod.Envelope(
            v=1, id=os.urandom(16), to=f"user{i % 40}@beta.example", device=1 + i % 3,
            expires=1_900_000_000_000, kind=1, body=os.urandom(BODY_BYTES),
        )

    push = fed.Push(
        request=7,
        items=tuple(
            fed.Transit(origin="alpha.example", dest="beta.example", hops=3, envelope=envelope(i), report=None)
            for i in range(PUSH_ENVELOPES)
        ),
    )
    deliver = api.Deliver(
        items=tuple(api.Delivery(envelope=envelope(i), stored_at=1_800_000_000_000 + i) for i in range(DELIVER_ENVELOPES))
    )
    return {"push": (push, fed.FEDERATION_FRAMES), "deliver": (deliver, api.CLIENT_FRAMES)}


def measure_with(wire: ModuleType, fed: ModuleType, api: ModuleType, env_mod: ModuleType, *, seconds: float, rounds: int) -> dict[str, float]:
    """The figures for one implementation of the codec (its four modules), so that an earlier
    tree's copy can be measured by the same code."""
    out: dict[str, float] = {}
    for name, (obj, frames) in _frames(wire, fed, api, env_mod).items():
        data = wire.encode_frame(obj)
        assert wire.decode_frame(data, frames) == obj
        plain = msgpack.unpackb(data, raw=False)
        n = len(obj.items)
        out[f"codec_{name}_decode_us"] = _cpu_us(lambda: wire.decode_frame(data, frames), seconds, rounds)
        out[f"codec_{name}_decode_us_ceiling"] = _cpu_us(lambda: msgpack.unpackb(data, raw=False), seconds, rounds)
        out[f"codec_{name}_encode_us"] = _cpu_us(lambda: wire.encode_frame(obj), seconds, rounds)
        out[f"codec_{name}_encode_us_ceiling"] = _cpu_us(lambda: msgpack.packb(plain, use_bin_type=True), seconds, rounds)
        if name == "push" and hasattr(wire, "encoded"):  # the outbox's items spliced in as stored
            stored = [wire.encode_struct(item) for item in obj.items]
            spliced = fed.Push(request=obj.request, items=tuple(wire.encoded(fed.Transit, b) for b in stored))
            assert wire.encode_frame(spliced) == data
            out["codec_push_encode_spliced_us"] = _cpu_us(lambda: wire.encode_frame(spliced), seconds, rounds)
            out["codec_push_encode_spliced_us_ceiling"] = out["codec_push_encode_us_ceiling"]
        out[f"codec_{name}_envelopes"] = n
        out[f"codec_{name}_bytes"] = len(data)
    return out


def measure(quick: bool = False) -> dict[str, float]:
    from sonet.core import client_api, envelope, federation_api, wire

    return measure_with(wire, federation_api, client_api, envelope, seconds=0.1 if quick else 0.5, rounds=2 if quick else 3)


if __name__ == "__main__":
    for key, value in measure(quick=True).items():
        print(f"{key}: {value:,.1f}")
