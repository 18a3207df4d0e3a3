"""One refusal exception and the one registry of error codes.

Every refusal anywhere in Sonet is a ``Refusal``: a machine-readable ``code`` from ``CODES`` and
a one-line message for humans (never secret material). Its families say who is at fault:

- ``ProtocolError`` (core): ``LocalProtocolError``, we were asked to do something the protocol
  forbids (a bug or misuse on our side); ``RemoteProtocolError``, the peer sent something
  invalid. ``DecryptError`` is deliberately opaque: it never says which check failed, so it
  cannot serve as an oracle. ``VerifyError``: a signature, certificate or identity check failed.
- the node's request refusals (node/client_checks.py ``RequestError``), federation's failed
  lookups and routes (federation/errors.py ``FederationError``), the store's refusals
  (federation/ports.py ``StoreFailure``, node/store ``StoreError``) derive from ``Refusal`` too.

``CODES`` lists every code with its one-line meaning; docs/protocol.md's "Errors" section lists
exactly these (tests/test_error_codes.py). A code that is not registered is a bug and fails at
the raise site (``ValueError``); a code received from a peer is checked with ``registered``
before it is trusted as one.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "CODES",
    "registered",
    "Refusal",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "DecryptError",
    "VerifyError",
    "sole_exception",
]

_CODES = {
    # The wire: handshakes, channels, frames
    "bad_input": "a message that does not decode, or breaks a cap of core/limits.py",
    "version": "a handshake of another protocol version",
    "crypto_mode_refused": "a crypto mode below the minimum, or one that was not offered",
    "decrypt_failed": "something that does not decrypt (no detail on purpose)",
    "verify_failed": "a signature over a transcript, record or prekey that does not verify",
    "wrong_identity": "a key other than the one pinned or authenticated",
    "unexpected_frame": "a frame the receiver never takes where it came",
    "local_error": "this side was asked to do something the protocol forbids (a bug)",
    # Admission and connections
    "unknown_peer": "on /federation, a key that is no configured peer",
    "too_many_links": "on /federation, a peer already holds the most links allowed",
    "unavailable": "the node cannot use its store right now; try again later",
    "rate_limited": "over a per-device, per-peer or per-address limit; try again later",
    "replayed": "a handshake's first message seen before (a replay of a recorded one)",
    "not_registered": "a request that needs a registered device from one that is not",
    "device_removed": "this device was removed from its account",
    "account_disabled": "the operator disabled this device's account (sonet-node accounts disable)",
    "too_many_connections": "over a connection cap (per address, node-wide or per device); the oldest or the newest closed",
    "handshake_timeout": "a connection did not complete its handshake within the deadline",
    "registration_timeout": "a /client connection without an account did not register or link in time",
    # Accounts, devices and device lists
    "already_registered": "a device that is registered asked to register or link",
    "bad_address": "an account or node name that is not one",
    "invite_required": "registration without an invite on an invite-only node",
    "invite_invalid": "an invite that is unknown, used or expired",
    "account_exists": "the account (or this device key) is registered already",
    "bad_device_list": "a device list that does not hold exactly the devices the change leaves",
    "stale_device_list": "a device list that is not the stored one's successor",
    "device_list_forged": "a device list whose signature does not verify with the account key",
    "device_list_malformed": "a device list that does not decode, or with devices out of order",
    "device_list_mismatch": "a device list for another account",
    "device_list_rollback": "a device list older than one this device has seen",
    "wrong_account": "a linked device's record names another account than the approver's",
    "too_many_devices": "the account has the most devices allowed",
    "last_device": "removing an account's last device",
    "unknown_device": "no such device of the account",
    "unlisted_device": "a device its account's signed device list does not name",
    # Linking a device
    "link_in_progress": "this connection already waits in a link slot",
    "link_busy": "too many devices are linking right now",
    "link_unknown": "no such link slot (mistyped, expired, taken), or its device is gone",
    "link_already_approved": "the link slot was approved already",
    "link_not_approved": "completing a link before any device approved it",
    "link_code_mismatch": "the new device's key does not match the link code",
    "provisioning_malformed": "a provisioning payload that does not decode",
    # Messages
    "unknown_account": "no such account on its node",
    "unknown_recipient": "an account or device this node does not have",
    "unknown_node": "a node that is not a configured peer",
    "expired": "an envelope whose expiry has passed",
    "mailbox_full": "the recipient's mailbox is over its quota",
    "message_request_limit": "a sender without the recipient's access token is over its small allowance of message requests",
    "sender_full": "the sending device or account holds its whole budget of undelivered messages; try again later",
    "outbox_full": "the queue towards a node that is not taking messages is at its budget; try again later",
    "relay_full": "a relay holds as much as it may for the origin node; try again later",
    "out_of_order": "a push on a federation link that is not the next one the receiver takes (a gap, or an old number)",
    "outbox_damaged": "a queued message whose stored copy no longer decodes (a damaged database): dropped, never sent",
    "disk_full": "the node is within its disk reserve and takes no new messages; try again later",
    "group_full": "a member device has as many group items waiting as it may hold; try again later",
    "hub_pending": "a node takes a group's items only from the hub it follows; pushed again later",
    "store_error": "the node could not store what it was given",
    "too_many_ids": "a status request naming too many rows",
    "content_malformed": "message content that does not decode",
    "devices_changing": "the recipient's device list changed at every try of one send",
    "pending_full": "no room on the device for another message waiting to be sent",
    "no_other_device": "a note to self from an account's only device: no device to deliver it to",
    # Replies, reactions, edits, deletes (client/gestures.py)
    "unknown_message": "a message id this device holds no message of",
    "not_author": "an edit or delete for everyone of a message someone else wrote",
    "too_late": "a delete for everyone later than its window after the message",
    "deleted": "a gesture on a message deleted for everyone",
    "not_sent_yet": "a gesture on a message still waiting on this device to be sent",
    "ambiguous_message": "a message id that names messages in several conversations on this device",
    # Attachments: the blob store (node/blobs.py) and downloads (client/attachments.py)
    "blob_unknown": "a blob the node does not hold (never created, expired, or another account's to write)",
    "blob_too_large": "a blob over the node's size limit",
    "blob_quota": "an account over its quota of stored blobs (bytes or count)",
    "blob_offset": "a blob chunk that does not start where the node's copy ends",
    "blob_corrupt": "a blob whose bytes do not match its declared SHA-256",
    "blob_incomplete": "a download of a blob still being uploaded",
    "file_corrupt": "a downloaded file that does not match the digests its message carries",
    "not_a_file": "a download of a message that is not a file",
    # Polls and calls (core/poll.py, core/call.py, client/polls.py)
    "not_a_poll": "a vote or poll close naming a message that is not a poll",
    "bad_option": "a vote for an option the poll does not have",
    "poll_closed": "a vote on a poll its author closed",
    "call_state": "a call action its state does not allow (answer a call that is not ringing, hang up one that ended)",
    "unknown_call": "a call id this device knows no call of",
    # Disappearing messages (core/timer.py)
    "bad_timer": "a disappearing-message timer that is not off or a duration from 1s to 30d",
    # Prekeys
    "too_many_prekeys": "more one-time prekeys than the node keeps per device",
    "wrong_prekey_kind": "a prekey in the wrong slot",
    "bad_prekey_id": "a one-time prekey with the signed prekey's id",
    "prekeys_missing": "a new device without the signed or last-resort prekey its crypto mode needs",
    # MLS KeyPackages (groups)
    "too_many_key_packages": "more one-time MLS KeyPackages than the node keeps per device",
    # Sender certificates and node keys
    "certificate_malformed": "a sender certificate that does not decode",
    "certificate_forged": "a sender certificate its node's key did not sign",
    "certificate_expired": "a sender certificate past its expiry",
    "certificate_not_yet_valid": "a sender certificate issued in the future",
    "certificate_too_long": "a sender certificate valid for longer than allowed",
    "certificate_mismatch": "a sender certificate that names a device its account does not list",
    "certificate_unknown": "a sealed box naming its sender certificate by a reference this device does not hold",
    "sender_removed": "a message of a device its account removed before the recipient's node took it",
    "unknown_node_key": "no known identity key for a node",
    "bad_node_key": "a node's identity key that does not match its pin or cannot be used",
    "node_key_changed": "a node's identity key differs from the one this device knows",
    "identity_changed": "a contact's identity key changed since it was verified",
    "safety_code_malformed": "a safety-number code that is damaged or not one",
    # Key directories and witnesses
    "bad_request": "directory sizes beyond the newest head",
    "bad_inclusion_proof": "a directory inclusion proof that does not verify",
    "bad_consistency_proof": "a directory consistency proof that does not verify",
    "bad_leaves": "directory leaves that do not match their signed heads",
    "directory_malformed": "a directory entry or proof that does not decode",
    "mls_malformed": "an MLS structure that does not decode, or breaks a cap of core/limits.py",
    "mls_generation": "an MLS message of a sender generation too far ahead, too old or already used",
    "mls_invalid": "an MLS structure that decodes but breaks a rule of RFC 9420 (signature, tree or parent hash, leaf)",
    # Groups (docs/groups.md)
    "group_malformed": "a group credential, group extension or hub state that does not decode",
    "group_credential": "a group member credential whose binding the device identity key did not sign",
    "not_allowed": "a group change the group's rules do not allow (admins only)",
    "group_exists": "a new group whose id the node already has",
    "group_refused": "a group change the group's hub refused (the outcome is in the message)",
    "not_member": "a device or account that is not a member of the group",
    "unknown_group": "a group this device (or the hub) does not know",
    "ambiguous_group": "a group name that several groups of this device have",
    "group_busy": "an earlier change of this device to the group is still on its way to the hub",
    "nothing_to_do": "a group change that would change nothing",
    "no_group_tree": "a ratchet tree the group's hub does not keep (never kept, or dropped)",
    "directory_mismatch": "a directory entry for another account or key than asked",
    "directory_too_large": "a directory that grew more than a device audits at once",
    "head_forged": "a directory head its node's key did not sign",
    "head_mismatch": "a directory head of another node or tree than expected",
    "stale_entry": "a directory entry older than the newest one of its account",
    "unwitnessed": "a directory head not yet cosigned by enough witnesses",
    "audit_behind": "a device's audit of its node's directory cannot catch up",
    "split_view": "a node showed two versions of its key directory",
    "cosignature_forged": "a cosignature its witness's key did not sign",
    "cosignature_mismatch": "a cosignature of another head than expected",
    "bad_cosignature": "a cosignature that does not verify for a head of this node",
    # Federation
    "unreachable": "another node did not answer (in time)",
    "not_relaying": "a relay that does not forward between these nodes",
    "unroutable": "no route to the destination node",
    "hop_limit": "an item that passed through too many relays",
    "invalid": "another node answered with something malformed",
    "peer_exists": "a peer of that name is configured already",
    "peer_invalid": "a peer entry that is malformed or still another peer's relay",
    "bad_node_url": "a node address that is not a usable ws:// or wss:// URL",
}

#: every error code, with its one-line meaning
CODES = MappingProxyType(_CODES)


def registered(code: str) -> bool:
    """Whether ``code`` (e.g. one a peer sent) is one of ``CODES``."""
    return code in _CODES


class Refusal(Exception):
    """A refusal: a registered ``code`` (sent in error frames, shown with --json) and a
    one-line message. Messages never contain secret material."""

    #: the code of a subclass whose instances do not name one
    code: str = "bad_input"

    def __init__(self, code: str, message: str) -> None:
        if code not in _CODES:
            raise ValueError(f"unregistered error code {code!r} (core/errors.py CODES)")
        super().__init__(message)
        self.code = code


class ProtocolError(Refusal):
    """Base of every error raised by ``core``: a message and, unless the class gives one, a code."""

    code = "bad_input"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(code or type(self).code, message)


class LocalProtocolError(ProtocolError):
    code = "local_error"


class RemoteProtocolError(ProtocolError):
    code = "bad_input"


class DecryptError(RemoteProtocolError):
    """Authenticated decryption failed. Carries no detail on purpose."""

    code = "decrypt_failed"

    def __init__(self, message: str = "decryption failed") -> None:
        super().__init__(message)


class VerifyError(RemoteProtocolError):
    """A signature, certificate or identity check failed."""

    code = "verify_failed"


def sole_exception(exc: BaseException) -> BaseException:
    """The one real error inside nested single-member exception groups (as structured
    concurrency produces them), or ``exc`` itself when there is more than one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
