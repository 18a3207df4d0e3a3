"""Access tokens on the device (core/access.py): this account's, to share with the people its
user writes to, and theirs, to present when writing to them (so that the recipients' nodes
count our envelopes as a contact's, not as message requests).

Ours comes with every sender certificate from our node; theirs arrive inside the sealed boxes
of the messages they write to us. Both are kept sealed in the device state. A token from a box
is remembered only once the box's sender is verified (the caller's job).
"""

from __future__ import annotations

from collections.abc import Iterable

from sonet.core.access import ACCESS_TOKEN_LEN
from sonet.core.client_api import AccessToken

from .state import DeviceState as State

__all__ = ["own_token", "remember_own_token", "remember_contact_token", "tokens_for"]

_OWN = "access_token"
_CONTACT = "access_token_of:"


def own_token(state: State) -> bytes | None:
    """This account's token, to put in the boxes of messages the user writes."""
    return state.get(_OWN)


def remember_own_token(state: State, token: bytes) -> None:
    if len(token) == ACCESS_TOKEN_LEN and state.get(_OWN) != token:
        state.put(_OWN, token)


def remember_contact_token(state: State, account: str, token: bytes | None) -> None:
    """Keep ``account``'s token (from a box whose sender was verified to be ``account``)."""
    if token is not None and len(token) == ACCESS_TOKEN_LEN and state.get(_CONTACT + account) != token:
        state.put(_CONTACT + account, token)


def tokens_for(state: State, accounts: Iterable[str]) -> tuple[AccessToken, ...]:
    """The tokens we know of ``accounts`` (ours for our own account is not needed: a node
    never counts an account's envelopes to itself as message requests)."""
    found = []
    for account in sorted(set(accounts)):
        token = state.get(_CONTACT + account)
        if token is not None:
            found.append(AccessToken(account=account, token=token))
    return tuple(found)
