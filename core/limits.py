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
    "MAX_GROUP_ITEM_BYTES",
    "MAX_GROUP_TREE_BYTES",
    "GROUP_TREE_CHUNK_BYTES",
    "MAX_ENVELOPES_PER_FRAME",
    "MAX_EPHEMERAL_BODY",
    "MAX_EPHEMERAL_PER_PUSH",
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
    "MESSAGE_DEADLINE_S",
    "DEFAULT_SENDER_CERT_VALIDITY_MS",
    "MAX_SENDER_CERT_VALIDITY_MS",
    "MAX_CERT_CLOCK_SKEW_MS",
    "MAX_SENDER_CERT_BYTES",
    "MAX_DEVICE_ID",
    "MAX_SEALED_MESSAGE_BYTES",
    "MAX_SEALED_MESSAGE_TYPE",
    "MAX_DEVICE_LIST_BYTES",
    "MAX_DEVICE_LIST_VERSION",
    "MAX_REMOVED_DEVICES",
    "REMOVED_DEVICE_GRACE_MS",
    "MAX_SENDER_RECORD_BYTES",
    "CONTENT_ID_LEN",
    "MAX_RECEIPT_IDS",
    "MAX_CONTENT_BYTES",
    "LINK_SLOT_LEN",
    "LINK_COMMITMENT_LEN",
    "MAX_PROVISIONING_BYTES",
    "MAX_URL_LEN",
    "MAX_ONE_TIME_PREKEYS",
    "MAX_FIRST_ONE_TIME_PREKEYS",
    "MAX_ONE_TIME_KEY_PACKAGES",
    "MAX_KEY_PACKAGE_BYTES",
    "LINK_SLOT_TTL_MS",
    "MAX_LINK_SLOTS",
    "MAX_LINK_EPHEMERAL_BYTES",
]

# Wire frames (msgpack) -----------------------------------------------------------------
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 8
MAX_ARRAY_LEN = 4096
MAX_MAP_LEN = 64
MAX_STR_LEN = 4096
#: one bytes field; raised from 1 MiB for group items: a Kind.GROUP envelope's body (one
#: GroupItem, MAX_GROUP_ITEM_BYTES) and the MLS commit inside it are single fields
MAX_BIN_LEN = 3 * 1024 * 1024

# Secure channel ------------------------------------------------------------------------
MAX_HANDSHAKE_MESSAGE_BYTES = 16 * 1024
#: one AEAD record = one frame + tag
MAX_RECORD_BYTES = MAX_FRAME_BYTES + 64
#: records per direction before the channel must be re-established (nonce space safety)
MAX_CHANNEL_RECORDS = 2**48
HANDSHAKE_DEADLINE_S = 10.0
#: a WebSocket message, from its first byte to its last (a record of MAX_RECORD_BYTES at
#: ~35 KB/s, a slow mobile link); the time between messages is not limited by it
MESSAGE_DEADLINE_S = 120.0

# Envelopes and mailboxes ---------------------------------------------------------------
ENVELOPE_ID_LEN = 16
MAX_ENVELOPE_BODY = 256 * 1024
#: the body of a Kind.GROUP envelope (one encoded GroupItem, core/groups/items.py): a commit
#: with an UpdatePath to every other device of a 2,000-device group is ~2.4 MB in suite 0x004D
#: (docs/groups.md "Sizes"); sized so that one item alone fits a Push (MAX_PUSH_BYTES)
MAX_GROUP_ITEM_BYTES = 2944 * 1024
#: a group's public ratchet tree, fetched by reference (FetchGroupTree): ~1.5 KB per device
#: plus ~1.25 KB per filled parent node in suite 0x004D, ~5.5 MB for 2,000 devices
MAX_GROUP_TREE_BYTES = 8 * 1024 * 1024
#: one GroupTree answer's part of it (fits a frame and a bytes field)
GROUP_TREE_CHUNK_BYTES = 1024 * 1024
MAX_ENVELOPES_PER_FRAME = 256
#: an ephemeral envelope (typing, presence: pushed, never stored). A sealed, padded typing
#: indicator that starts a session measures ~4.5 KB classical, ~18.6 KB hybrid, ~21.6 KB pq
#: (certificate, sender record and prekey header included); later ones 3.9-9.5 KB. Above
#: this: bad_input.
MAX_EPHEMERAL_BODY = 32 * 1024
#: ephemeral envelopes in one EphemeralPush between nodes (64 of the largest: 2 MiB, under
#: MAX_FRAME_BYTES)
MAX_EPHEMERAL_PER_PUSH = 64
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

# Sealed sender (core/certs.py, core/sealed_sender.py) -----------------------------------
#: what a home node issues by default; a recipient refuses anything valid for longer
DEFAULT_SENDER_CERT_VALIDITY_MS = 24 * 3600 * 1000
MAX_SENDER_CERT_VALIDITY_MS = 7 * 24 * 3600 * 1000
#: how far in the future a certificate's issue time may lie (clocks of two nodes disagree)
MAX_CERT_CLOCK_SKEW_MS = 5 * 60 * 1000
MAX_SENDER_CERT_BYTES = 16 * 1024
#: device ids are 1..MAX_DEVICE_ID, as in envelopes
MAX_DEVICE_ID = 2**31 - 1
#: the opaque ratchet message inside a sealed box; leaves room for the certificate and HPKE
#: overhead so that the box fits in one envelope body
MAX_SEALED_MESSAGE_BYTES = MAX_ENVELOPE_BODY - 32 * 1024
MAX_SEALED_MESSAGE_TYPE = 255

# Device lists (core/device_list.py) -----------------------------------------------------
MAX_DEVICE_LIST_BYTES = 16 * 1024
MAX_DEVICE_LIST_VERSION = 2**63 - 1
#: removals a list remembers (fingerprint and time), for messages accepted before them
MAX_REMOVED_DEVICES = 32
#: how long after its removal a device's messages may still arrive: an envelope accepted
#: before the removal expires at the latest this long after it
REMOVED_DEVICE_GRACE_MS = MAX_ENVELOPE_TTL_MS
#: the sender's signed device record inside a sealed box that starts a session
MAX_SENDER_RECORD_BYTES = 16 * 1024

# Message content (core/content.py) ------------------------------------------------------
CONTENT_ID_LEN = 16
MAX_RECEIPT_IDS = 256
#: a whole encoded content object: the longest text plus room for the other fields and an
#: image file's thumbnail (core/thumbnail.py: 24 KiB; beside a caption of the longest text)
MAX_CONTENT_BYTES = MAX_TEXT_LEN + 32 * 1024

# Device linking (core/provisioning.py) --------------------------------------------------
LINK_SLOT_LEN = 16
LINK_COMMITMENT_LEN = 16
MAX_PROVISIONING_BYTES = 16 * 1024
MAX_URL_LEN = 2048

# End-to-end sessions (core/ratchet/) ----------------------------------------------------
#: message keys a single header may make the receiver derive and keep for one chain step
MAX_SKIP = 2000
#: skipped message keys kept per session in total; the oldest are evicted beyond this
MAX_SKIPPED_KEYS = 5000
#: prekey ids are 32-bit unsigned; message numbers within one chain as well
MAX_PREKEY_ID = 2**32 - 1
MAX_CHAIN_INDEX = 2**32 - 1
#: plaintext of one ratchet message (a content object, MAX_CONTENT_BYTES, fits with room)
MAX_RATCHET_PLAINTEXT = 128 * 1024
#: one encoded ratchet message including the prekey header; fits in a sealed box
MAX_RATCHET_MESSAGE_BYTES = MAX_RATCHET_PLAINTEXT + 16 * 1024
#: a serialized session record (local state; dominated by MAX_SKIPPED_KEYS skipped keys)
MAX_SESSION_RECORD_BYTES = 1024 * 1024

__all__ += [
    "MAX_SKIP",
    "MAX_SKIPPED_KEYS",
    "MAX_PREKEY_ID",
    "MAX_CHAIN_INDEX",
    "MAX_RATCHET_PLAINTEXT",
    "MAX_RATCHET_MESSAGE_BYTES",
    "MAX_SESSION_RECORD_BYTES",
]

# Prekeys and linking on the node (node/client_keys.py, node/client_registration.py, node/linking.py)
#: one-time prekeys of each kind a node holds per device, and accepts in one PublishPrekeys
MAX_ONE_TIME_PREKEYS = 200
#: one-time prekeys of each kind a NEW device may bring in its Register / LinkComplete: what it
#: needs to start (the client sends 60, client/prekeys.py TARGET) and no more, since anyone may
#: send these before having an account and each costs the node a signature check; it tops up
#: with PublishPrekeys once registered
MAX_FIRST_ONE_TIME_PREKEYS = 64
#: one-time MLS KeyPackages a node holds per device, and accepts in one PublishKeyPackages
#: (docs/groups.md), and the size of each KeyPackage (an MLSMessage; a hybrid credential
#: binding makes one ~5 KiB)
MAX_ONE_TIME_KEY_PACKAGES = 100
MAX_KEY_PACKAGE_BYTES = 16 * 1024
#: how long a provisioning slot waits for approval and completion
LINK_SLOT_TTL_MS = 10 * 60 * 1000
#: provisioning slots open at once on one node
MAX_LINK_SLOTS = 1024
#: the new device's ephemeral HPKE public key in LinkBegin
MAX_LINK_EPHEMERAL_BYTES = 4096

# Federation (federation/, core/federation_api.py)
#: envelope ids in one FetchStatus
MAX_STATUS_IDS = 1024
#: items in one Push frame, and their encoded size (a Push must stay under MAX_FRAME_BYTES)
MAX_TRANSIT_PER_PUSH = 1024
MAX_PUSH_BYTES = 3 * 1024 * 1024
#: hops an item may still take; a relay decrements it (loops end, never circle)
MAX_HOPS = 4
#: how long a home node keeps a remote account's device list (a send fetches it just before)
REMOTE_DEVICES_TTL_MS = 30 * 1000
#: how long a link waits for a peer's answer to one request
PEER_REQUEST_DEADLINE_S = 30.0

__all__ += [
    "MAX_STATUS_IDS",
    "MAX_TRANSIT_PER_PUSH",
    "MAX_PUSH_BYTES",
    "MAX_HOPS",
    "REMOTE_DEVICES_TTL_MS",
    "PEER_REQUEST_DEADLINE_S",
]

# Key directory and transparency (core/keydir/)
#: hashes in one inclusion or consistency proof (a tree of up to 2**63 leaves needs < 128)
MAX_PROOF_HASHES = 128
#: one directory leaf: account, identity key and signed device list in canonical CBOR
MAX_DIRECTORY_LEAF_BYTES = 32 * 1024
#: one signed tree head, and one cosignature (hybrid signatures are ~3.4 KB)
MAX_TREE_HEAD_BYTES = 8 * 1024
MAX_COSIGNATURE_BYTES = 8 * 1024
#: cosignatures carried with one head
MAX_COSIGNATURES = 32
#: heads in one Gossip frame
MAX_GOSSIP_HEADS = 256
#: directory leaves in one Leaves answer (~6 KB each with hybrid keys: ~0.8 MB)
MAX_LEAVES_PER_FETCH = 128
#: leaf bytes in one Leaves answer (128 leaves of the largest size would not fit in a frame):
#: the node sends fewer, the device asks again for the rest
MAX_LEAVES_BYTES = 2 * 1024 * 1024

__all__ += [
    "MAX_PROOF_HASHES",
    "MAX_DIRECTORY_LEAF_BYTES",
    "MAX_TREE_HEAD_BYTES",
    "MAX_COSIGNATURE_BYTES",
    "MAX_COSIGNATURES",
    "MAX_GOSSIP_HEADS",
    "MAX_LEAVES_PER_FETCH",
    "MAX_LEAVES_BYTES",
]

# Connections (transport/admission.py, node/client_session.py)
#: the largest record a /client connection sends before it has an account: a Register or a
#: LinkComplete (a device record, a device list, an identity key and the first prekeys, up to
#: MAX_FIRST_ONE_TIME_PREKEYS of each kind at < 5 KiB each: ~0.83 MiB; the client's, hybrid
#: with 60 + 60, ~0.49 MB)
MAX_UNREGISTERED_RECORD_BYTES = MAX_CBOR_BYTES + MAX_DEVICE_LIST_BYTES + 2 * MAX_FIRST_ONE_TIME_PREKEYS * 5 * 1024 + 64 * 1024

__all__ += ["MAX_UNREGISTERED_RECORD_BYTES"]

# MLS (core/mls/)
#: one encoded MLS object (a message, a Welcome, a GroupInfo or a ratchet tree). A Welcome with
#: the ratchet tree of a 1,500-member group under the X-Wing suite (1,216-byte HPKE keys in
#: every leaf and parent node) is ~4-5 MB; above this cap: mls_malformed before any allocation
MLS_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

__all__ += ["MLS_MAX_MESSAGE_BYTES"]

#: secret tree (core/mls/secret_tree/): how far past a sender's next expected generation a
#: message may be (the keys in between are derived and kept for the messages still to come);
#: one further is refused before any derivation. OpenMLS's maximum_forward_distance is 1000 too.
MLS_MAX_SKIPPED_GENERATIONS = 1000
#: how many generations behind a sender's newest the unused keys of skipped messages are kept
#: for late, out-of-order messages (older ones are deleted: forward secrecy). OpenMLS keeps 5
#: (out_of_order_tolerance); ours is larger for messages that travel through federation relays
#: and may overtake each other
MLS_OUT_OF_ORDER_WINDOW = 32

__all__ += ["MLS_MAX_SKIPPED_GENERATIONS", "MLS_OUT_OF_ORDER_WINDOW"]

#: ratchet tree (core/mls/tree/): the most leaves a tree may have (decoded, or grown by Adds).
#: Groups are meant for up to 1,500 members; 8x that leaves room and refuses a hostile encoding
#: of millions of 1-byte blank nodes before it is read into a list
MLS_MAX_TREE_LEAVES = 1 << 14

__all__ += ["MLS_MAX_TREE_LEAVES"]

#: the most values in one list of a Capabilities or RequiredCapabilities (versions, cipher suites,
#: extension, proposal and credential types; u16 each). A client lists a handful plus a few GREASE
#: values; a decoded Python int costs ~18 times its 2 bytes, so a longer list is refused from its
#: length prefix, before any value is decoded (OpenMLS and mls-rs bound them by the message only)
MLS_MAX_CAPABILITY_ITEMS = 256

__all__ += ["MLS_MAX_CAPABILITY_ITEMS"]

# Message content (core/content.py, core/attachment.py re-export these) ------------------
# Here, beside the other bounds, so that the command line's help texts name them without
# loading the content model, attachments and the wire codec (tests/test_cli_imports.py)

MAX_EMOJI_BYTES = 64  # a family of four with skin tones is 41 bytes
#: delete for everyone: at most this long after the message (Signal: 24 h; Matrix: no limit)
DELETE_WINDOW_MS = 48 * 3600 * 1000
MAX_GROUP_NAME_LEN = 128
MAX_GROUP_TOPIC_LEN = 1024
#: the longest voice note (ms): three hours
MAX_VOICE_MS = 3 * 3600 * 1000

__all__ += ["MAX_EMOJI_BYTES", "DELETE_WINDOW_MS", "MAX_GROUP_NAME_LEN", "MAX_GROUP_TOPIC_LEN", "MAX_VOICE_MS"]
