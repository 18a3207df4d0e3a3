"""MLS (RFC 9420) as a pure, sans-I/O library: one folder per concept.

- ``codec/``: the TLS presentation-language codec (caps from core/limits.py)
- ``tree_math/``: array-tree index arithmetic (RFC 9420 Appendix C)
- ``crypto/``: cipher suites 1-7 and 0x004D over core/crypto/'s primitives
- ``key_schedule/``, ``secret_tree/``, ``psk/``: epoch secrets, per-sender ratchets, PSKs
- ``framing/``: PublicMessage, PrivateMessage, MLSMessage, transcript hashes
- ``tree/``, ``key_package/``, ``extensions/``: leaf and parent nodes, the ratchet tree, TreeKEM
- ``messages/``: proposals, Commit, Welcome, GroupInfo and friends
- ``interop/``: the runner of the IETF interop vectors (``python -m sonet.core.mls.interop``)

docs/mls.md describes the layout and what passes so far.
"""
