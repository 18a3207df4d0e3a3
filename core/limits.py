"""Every size and count bound of the protocol, in one place.

Decoders consult these before allocating; exceeding one is a RemoteProtocolError.
"""

from __future__ import annotations

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_DEPTH",
    "MAX_ARRAY_LEN",
    "MAX_MAP_LEN",
    "MAX_STR_LEN",
    "MAX_BIN_LEN",
    "MAX_HANDSHAKE_MESSAGE_BYTES",
    "MAX_RECORD_BYTES",
    "MAX_ENVELOPE_BODY",
    "MAX_ENVELOPES_PER_FRAME",
    "MAX_ACCOUNT_LEN",
    "MAX_NODE_NAME_LEN",
    "MAX_DEVICES_PER_ACCOUNT",
    "MAX_TEXT_LEN",
    "MAX_CBOR_BYTES",
    "ENVELOPE_ID_LEN",
    "DEFAULT_ENVELOPE_TTL_MS",
    "MAX_ENVELOPE_TTL_MS",
    "DEFAULT_MAILBOX_MAX_ENVELOPES",
    "DEFAULT_MAILBOX_MAX_BYTES",
    "MAX_CHANNEL_RECORDS",
    "HANDSHAKE_DEADLINE_S",
]

# Wire frames (msgpack) -----------------------------------------------------------------
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 8
MAX_ARRAY_LEN = 4096
MAX_MAP_LEN = 64
MAX_STR_LEN = 4096
MAX_BIN_LEN = 1024 * 1024

# Secure channel ------------------------------------------------------------------------
MAX_HANDSHAKE_MESSAGE_BYTES = 16 * 1024
#: one AEAD record = one frame + tag
MAX_RECORD_BYTES = MAX_FRAME_BYTES + 64
#: records per direction before the channel must be re-established (nonce space safety)
MAX_CHANNEL_RECORDS = 2**48
HANDSHAKE_DEADLINE_S = 10.0

# Envelopes and mailboxes ---------------------------------------------------------------
ENVELOPE_ID_LEN = 16
MAX_ENVELOPE_BODY = 256 * 1024
MAX_ENVELOPES_PER_FRAME = 256
DEFAULT_ENVELOPE_TTL_MS = 30 * 24 * 3600 * 1000
MAX_ENVELOPE_TTL_MS = DEFAULT_ENVELOPE_TTL_MS
DEFAULT_MAILBOX_MAX_ENVELOPES = 10_000
DEFAULT_MAILBOX_MAX_BYTES = 256 * 1024 * 1024

# Names and directory -------------------------------------------------------------------
MAX_ACCOUNT_LEN = 64
MAX_NODE_NAME_LEN = 253
MAX_DEVICES_PER_ACCOUNT = 16
MAX_TEXT_LEN = 64 * 1024
#: signed/hashed CBOR objects (key bundles, sealed payloads)
MAX_CBOR_BYTES = 128 * 1024
