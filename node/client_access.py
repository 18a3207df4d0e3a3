"""Which envelopes of a ``SendBatch`` are message requests, and whether their allowance takes
them (federation/message_requests.py; the tokens: core/access.py).

An envelope to an account of this node is a contact's if the batch carries that account's valid
access token, or if it goes to the sender's own account; otherwise it is a message request,
charged to the sending device and to the mailbox. An envelope to another node's account is
charged to the sending device only when the batch carries no token for it (only that node can
check a token; it charges the rest). Ephemeral envelopes (typing) are never stored and are not
counted here. The whole batch is refused (``message_request_limit``) if one envelope is over;
envelopes checked before it keep their cost.
"""

from __future__ import annotations

from sonet.core.address import Address
from sonet.core.client_api import SendBatch
from sonet.core.envelope import Envelope, Kind
from sonet.federation.message_requests import REFUSAL

from .client_checks import RequestError
from .client_context import Session

__all__ = ["check_message_requests"]


def check_message_requests(
    session: Session, req: SendBatch, envelopes: list[tuple[Address, Envelope]], *, sender_account: str, now: int
) -> dict[str, bytes]:
    """Refuse the batch if a message request in it is over its allowance; return the access
    token the batch gave for each recipient account (to travel with envelopes to other nodes)."""
    ctx = session.ctx
    tokens = {a.account: a.token for a in req.access}
    requests = ctx.requests
    if requests is None:
        return tokens
    device = session.peer.fingerprint
    contacts: dict[str, bool] = {}
    for address, env in envelopes:
        if env.kind != Kind.SEALED or env.to == sender_account:
            continue
        token = tokens.get(env.to, b"")
        local = address.node == ctx.name
        if local:
            if env.to not in contacts:
                contacts[env.to] = requests.is_contact(env.to, token, now=now)
            if contacts[env.to]:
                continue
        elif token:
            continue
        refusal = requests.from_device(device, (env.to, env.device), len(env.body), now=now, local=local)
        if refusal is not None:
            raise RequestError(REFUSAL, f"{refusal}: they are not your contact yet; wait for an answer")
    return tokens
