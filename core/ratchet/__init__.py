"""End-to-end sessions between devices: prekeys, PQXDH session setup, Double Ratchet with a
post-quantum ratchet (per turn in pq mode, sparse ML-KEM epochs in hybrid mode: epochs.py),
and session records. Pure code: randomness is a parameter.

Typical use (see the module docstrings for the protocol details)::

    # recipient device: publish prekeys
    secret, signed = generate_prekey(identity, X25519, key_id, rng)
    # sender: verify a fetched bundle, start a session, send
    bundle = verify_bundle(PrekeyBundle(mode=..., identity=..., identity_dh=..., signed_prekey=...,
                                        pq_prekey=..., one_time_prekey=...))
    _header, state = initiate(mode=mode, identity=my_key, identity_dh_secret=my_dh, bundle=bundle, rng=rng)
    message, state = encrypt(state, b"hi")
    # recipient: the first message creates its session
    plaintext, state, used = open_initial(message, mode=mode, identity=..., identity_dh_secret=...,
                                          prekey_secret=lookup, rng=rng)
    # afterwards, both directions
    plaintext, state = decrypt(state, message, rng)
"""

from .pqxdh import (
    PrekeyHeader,
    PrekeySecretLookup,
    associated_data,
    initiate,
    open_initial,
    read_prekey_header,
    respond,
    session_mode,
)
from .prekeys import (
    KINDS,
    MLKEM768,
    X25519,
    PrekeyBundle,
    PrekeySecret,
    SignedPrekey,
    decode_prekey,
    generate_prekey,
    verify_bundle,
    verify_prekey,
)
from .session import INITIATOR, RESPONDER, SessionState, decrypt, encrypt, is_initial, looks_initial

__all__ = [
    "INITIATOR",
    "KINDS",
    "MLKEM768",
    "RESPONDER",
    "X25519",
    "PrekeyBundle",
    "PrekeyHeader",
    "PrekeySecret",
    "PrekeySecretLookup",
    "SessionState",
    "SignedPrekey",
    "associated_data",
    "decode_prekey",
    "decrypt",
    "encrypt",
    "generate_prekey",
    "initiate",
    "is_initial",
    "looks_initial",
    "open_initial",
    "read_prekey_header",
    "respond",
    "session_mode",
    "verify_bundle",
    "verify_prekey",
]
