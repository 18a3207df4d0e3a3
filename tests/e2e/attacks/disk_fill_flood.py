"""The attacker of test_disk_fill.py, as its own process: one freshly registered device floods
a recipient with envelopes of the largest size, for a bounded time and count, and prints what
the node did with them as one JSON line.

    python -m tests.e2e.attacks.disk_fill_flood victim URL FINGERPRINT INVITE ADDRESS
    python -m tests.e2e.attacks.disk_fill_flood flood URL FINGERPRINT INVITE ATTACKER TO TOKEN SECONDS MAX_COUNT

``victim`` registers ADDRESS (an account the attacker controls, anywhere) and prints its access
token (hex) as ``{"token": ...}``: the flood then carries it, so its envelopes are a contact's,
not message requests with their small allowance -- the worst case for storage. ``flood``
registers ATTACKER at URL's node and sends to TO's device 1 until SECONDS or MAX_COUNT. Refused
envelopes are counted by code and the flood goes on (an attacker would); a connection the node
ends is dialled again.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import trio

from sonet.core import limits
from sonet.core.client_api import AccessToken, Accepted, GetSenderCertificate, Register, Registered, SendBatch, SenderCertificate
from sonet.core.invite import parse_invite
from tests.node.kit import Account, ConnectError, Member, NodeError, connect_raw, opaque_envelope

BODY = limits.MAX_ENVELOPE_BODY


async def register(url: str, fingerprint: str, invite: str, address: str) -> Member:
    user = address.split("@")[0]
    account = Account(address=address)
    member = Member.new(account.address)
    async with connect_raw(url, identity=member.identity, node_fingerprint=fingerprint) as conn:
        reply = await conn.request(
            lambda n: Register(
                request=n,
                user=user,
                invite=parse_invite(invite)[1],
                record=member.record,
                account_identity=account.identity_bytes,
                device_list=account.sign_list([member.fingerprint], version=1),
                keys=member.keys,
            )
        )
    assert isinstance(reply, Registered), reply
    return member


async def access_token(url: str, fingerprint: str, member: Member) -> bytes:
    async with connect_raw(url, identity=member.identity, node_fingerprint=fingerprint) as conn:
        reply = await conn.request(lambda n: GetSenderCertificate(request=n))
    assert isinstance(reply, SenderCertificate) and reply.access, reply
    return reply.access


async def flood(url: str, fingerprint: str, invite: str, attacker_address: str, to: str, token: bytes, seconds: float, max_count: int) -> dict:
    attacker = await register(url, fingerprint, invite, attacker_address)
    codes: Counter[str] = Counter()
    accepted = attempts = reconnects = 0
    start = time.monotonic()
    while attempts < max_count and time.monotonic() - start < seconds:
        try:
            async with connect_raw(url, identity=attacker.identity, node_fingerprint=fingerprint) as conn:
                while attempts < max_count and time.monotonic() - start < seconds:
                    env = opaque_envelope((to, 1), body=b"\x00" * BODY)
                    batch = SendBatch(request=0, envelopes=(env,), access=(AccessToken(account=to, token=token),))
                    attempts += 1
                    try:
                        answer = await conn.request(lambda n, b=batch: SendBatch(request=n, envelopes=b.envelopes, access=b.access))
                    except NodeError as exc:
                        codes[str(exc).split(":", 1)[0]] += 1
                        continue
                    assert isinstance(answer, Accepted), answer
                    accepted += 1
        except ConnectError:
            reconnects += 1
            await trio.sleep(0.05)
    return {
        "attempts": attempts,
        "accepted": accepted,
        "accepted_bytes": accepted * BODY,
        "refused": dict(codes),
        "reconnects": reconnects,
        "seconds": round(time.monotonic() - start, 1),
    }


def main() -> None:
    command, url, fingerprint, invite, address, *rest = sys.argv[1:]
    if command == "victim":
        print(json.dumps({"token": trio.run(victim, url, fingerprint, invite, address).hex()}))
        return
    to, token, seconds, max_count = rest
    print(json.dumps(trio.run(flood, url, fingerprint, invite, address, to, bytes.fromhex(token), float(seconds), int(max_count))))


async def victim(url: str, fingerprint: str, invite: str, address: str) -> bytes:
    return await access_token(url, fingerprint, await register(url, fingerprint, invite, address))


if __name__ == "__main__":
    main()
