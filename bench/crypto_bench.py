"""Client crypto on one core: ratchet messages and PQXDH session setups, pure core API only.

Everything runs in this process on one thread (no trio, sockets, SQLite); randomness is
``os.urandom`` as in the client. Times are wall-clock (``perf_counter``). To share the noise
of a busy machine fairly, each figure and its ceiling are timed in alternating chunks and
summed; the ceiling always does as many iterations as the figure.

``client_{hybrid,classical}_msgs_per_s`` -- one message = the sender's and the receiver's work
for one sealed 1:1 text, as client/sdk.py ``_send`` and client/receiving.py ``_open`` do it:
``encode_content`` (a "text" Content with 1024 characters of ASCII text), the live session
state from the device's ``SessionCache`` (client/session_cache.py: the stored record, compared
with the one the live state was saved as), ratchet ``encrypt``, ``to_bytes`` and ``remember``,
sealed-sender ``seal`` to the recipient's HPKE key with the sender certificate, or its reference
once the session shows the recipient holds it (client/cert_refs.py ``plan_send``, as
``Sessions.encrypt_sealed``: from the first answered chain on); then ``unseal``, the held
certificate for a reference, ``CertificateCache.node`` and ``.verify`` (core/certs.py: the
node-key signature is checked once per certificate, its validity window on every message),
``cert.matches``, the session from the cache, ratchet ``decrypt``, the identity check of
``Sessions._staged``, ``after_receive``, ``to_bytes`` and ``remember``, ``decode_content``. Nothing is persisted (no SQLite, no vault
sealing, no fsync). Each device has its own caches, as each client process has, and they are
warm (the first message of a run fills them). Direction alternates every 10 messages, so every 10th message starts a new chain: the
receiver makes a ratchet turn (X25519 DH, then its own fresh X25519 key). In hybrid the
sparse post-quantum ratchet (core/ratchet/epochs.py) adds one ML-KEM-768 exchange per epoch
(key generation, encapsulation, decapsulation; an epoch is about 26 messages here), its key
and ciphertext in 400-byte chunks on 6 of those messages. All keys (identities, node key, HPKE keys) are of the
measured mode: classical = X25519/Ed25519 (+ DHKEM-X25519 HPKE), hybrid = X25519 + ML-KEM-768,
Ed25519 + ML-DSA-65 (+ X-Wing HPKE).

``..._ceiling`` -- per message, raw ``cryptography`` calls only: two AES-256-GCM seal+open of
the same 1 KiB payload (ratchet layer and sealed-sender layer); the sealed-sender KEM (classical:
X25519 key generation + 2 DH; hybrid: that plus ML-KEM-768 encapsulation + decapsulation);
one tenth of a ratchet turn (X25519 key generation + 2 DH); and in hybrid an ML-KEM-768 key
generation + encapsulation + decapsulation every ``EPOCH_INTERVAL`` (20) messages, the
shortest epoch there can be. Not in the ceiling: the certificate signature
check (cached per certificate), KDFs/HMAC, CBOR, session record serialisation.

``pqxdh_sessions_per_s`` (hybrid) / ``pqxdh_sessions_per_s_classical`` -- one setup = what
client/sessions.py ``establish`` and ``decrypt`` do for a new session: the initiator decodes
each signed prekey of the bundle (signed X25519 prekey, one-time X25519 prekey, and in hybrid a
one-time ML-KEM-768 prekey), ``verify_bundle`` (checks each prekey signature once),
``initiate`` and ``encrypt`` of the first 1 KiB content; the responder ``open_initial`` (PQXDH respond + first decrypt, including
its first ratchet turn) and the identity check. Bob's prekeys are generated and signed outside
the timing (fresh one-time keys for every session).

``..._ceiling`` -- per setup, raw ``cryptography`` calls: X25519 key generation + 4 DH
(initiator) + 4 DH (responder); per verified prekey an Ed25519 verify (hybrid: + ML-DSA-65
verify) over a body of the prekey's size (2 prekeys classical, 3 hybrid); hybrid also one
ML-KEM-768 encapsulation + decapsulation.

Budget: quick about 5 s, full about 40 s, split over the four figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sonet.client.cert_refs import SentCertificate, after_receive, plan_send
from sonet.client.session_cache import SessionCache
from sonet.core.certs import CertificateCache, certificate_ref, issue_certificate
from sonet.core.content import Content, decode_content, encode_content
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey, X25519KeyPair
from sonet.core.ratchet import (
    MLKEM768,
    X25519,
    PrekeyBundle,
    decode_prekey,
    decrypt,
    encrypt,
    generate_prekey,
    initiate,
    open_initial,
    verify_bundle,
)
from sonet.core.ratchet.epochs import EPOCH_INTERVAL
from sonet.core.sealed_sender import seal, unseal

__all__ = ["measure"]

TEXT = "x" * 1024
PAYLOAD = os.urandom(1024)
TURN_EVERY = 10  # messages per direction before it flips
RATCHET_MESSAGE = 1  # client/sdk.py
NODE = "alpha.example"
NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000
rng = os.urandom


@dataclass
class _Device:
    address: str
    device: int
    identity: SigningKey
    dh_secret: bytes | None
    hpke: HpkePrivateKey
    cert: bytes
    record: bytes = b""  # serialized session state with the peer (the store's copy)
    sessions: SessionCache = field(default_factory=SessionCache)
    certificates: CertificateCache = field(default_factory=CertificateCache)
    #: what the peer holds of our certificate; the peer's certificates we hold, by reference
    sent: SentCertificate | None = None
    held: dict[bytes, bytes] = field(default_factory=dict)
    cert_ref: bytes = b""  # the client computes it once per certificate it fetches

    def __post_init__(self) -> None:
        self.cert_ref = certificate_ref(self.cert)

    @property
    def fp(self) -> str:
        return self.identity.public.fingerprint


def _device(mode: CryptoMode, node_key: SigningKey, name: str) -> _Device:
    identity = SigningKey.generate(mode, rng)
    address = f"{name}@{NODE}"
    cert = issue_certificate(node_key, node=NODE, account=address, device=1, identity=identity.public, now=NOW, validity_ms=DAY)
    return _Device(address, 1, identity, rng(32) if mode.uses_classical else None, HpkePrivateKey.generate(mode, rng), cert)


def _content(text: str = TEXT) -> bytes:
    return encode_content(Content(type="text", id=rng(16), sent_at=NOW, text=text))


def _prekeys(mode: CryptoMode, bob: _Device, spk: tuple, key_id: int) -> tuple[dict, dict[str, bytes]]:
    """Fresh one-time prekeys for one session: (secret store, published raw prekeys)."""
    store = {(X25519, spk[0].key_id): spk[0]}
    published = {"signed": spk[1].to_bytes()}
    kinds = [("one_time", X25519)] + ([("pq", MLKEM768)] if mode.uses_pq else [])
    for slot, kind in kinds:
        secret, signed = generate_prekey(bob.identity, kind, key_id, rng)
        store[(kind, key_id)] = secret
        published[slot] = signed.to_bytes()
    return store, published


def _setup(mode: CryptoMode, alice: _Device, bob: _Device, store: dict, published: dict[str, bytes]) -> tuple[bytes, bytes]:
    """One PQXDH session setup; returns (alice's record, bob's record)."""
    ident = bob.identity.public
    bundle = verify_bundle(
        PrekeyBundle(
            mode=mode,
            identity=ident,
            identity_dh=X25519KeyPair(bob.dh_secret).public,
            signed_prekey=decode_prekey(published["signed"]),
            pq_prekey=decode_prekey(published["pq"]) if mode.uses_pq else None,
            one_time_prekey=decode_prekey(published["one_time"]),
        )
    )
    _header, state = initiate(mode=mode, identity=alice.identity, identity_dh_secret=alice.dh_secret, bundle=bundle, rng=rng)
    message, state = encrypt(state, _content())
    _plain, bob_state, _used = open_initial(
        message, mode=mode, identity=bob.identity, identity_dh_secret=bob.dh_secret, prekey_secret=lambda k, i: store.get((k, i)), rng=rng
    )
    if bob_state.peer_identity != alice.identity.public:
        raise AssertionError("session with the wrong identity")
    return state.to_bytes(), bob_state.to_bytes()


def _send_and_receive(sender: _Device, receiver: _Device, node_key, text: str = TEXT) -> int:  # noqa: ANN001
    """One message; returns the size of its sealed box."""
    session = sender.sessions.load(receiver.address, 1, sender.record)
    ref = sender.cert_ref
    by_ref, sender.sent = plan_send(sender.sent, session, ref)
    message, state = encrypt(session, _content(text))
    sender.record = state.to_bytes()
    sender.sessions.remember(receiver.address, 1, sender.record, state)
    body = seal(
        certificate=None if by_ref else sender.cert, certificate_ref=ref if by_ref else None, message=message,
        msg_type=RATCHET_MESSAGE, to_key=receiver.hpke.public, recipient_fp=receiver.fp,
    )  # fmt: skip
    unsealed = unseal(body, my_key=receiver.hpke, my_fp=receiver.fp)
    raw = unsealed.certificate_raw or receiver.held[unsealed.certificate_ref or b""]
    node = receiver.certificates.node(raw)
    cert = receiver.certificates.verify(raw, node_key=node_key, node=node, now=NOW + 1000)
    if not cert.matches(sender.identity.public, sender.address):
        raise AssertionError("certificate mismatch")
    before = receiver.sessions.load(sender.address, 1, receiver.record)
    plaintext, state = decrypt(before, unsealed.message, rng)
    if state.peer_identity != sender.identity.public:
        raise AssertionError("session with the wrong identity")
    if unsealed.certificate_raw is not None:
        receiver.held[certificate_ref(raw)] = raw
    receiver.sent = after_receive(receiver.sent, before, state)
    receiver.record = state.to_bytes()
    receiver.sessions.remember(sender.address, 1, receiver.record, state)
    if decode_content(plaintext).text != text:
        raise AssertionError("wrong plaintext")
    return len(body)


# Raw-primitive ceilings -----------------------------------------------------------------------


class _Raw:
    def __init__(self) -> None:
        self.aead = AESGCM(os.urandom(32))
        self.x_peer = x25519.X25519PrivateKey.generate()
        self.x_peer_pub = self.x_peer.public_key()
        self.kem = mlkem.MLKEM768PrivateKey.generate()
        self.kem_pub = self.kem.public_key()
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.ml = mldsa.MLDSA65PrivateKey.generate()

    def aead_round(self) -> None:
        nonce = os.urandom(12)
        self.aead.decrypt(nonce, self.aead.encrypt(nonce, PAYLOAD, b""), b"")

    def dh_keygen_pair(self) -> None:
        """A fresh X25519 key and a DH on each side (one ratchet step or a DHKEM)."""
        eph = x25519.X25519PrivateKey.generate()
        eph.exchange(self.x_peer_pub)
        self.x_peer.exchange(eph.public_key())

    def kem_pair(self, keygen: bool = False) -> None:
        if keygen:
            mlkem.MLKEM768PrivateKey.generate().public_key()
        _ss, ct = self.kem_pub.encapsulate()
        self.kem.decapsulate(ct)

    def signed(self, size: int, hybrid: bool) -> tuple[Callable[[], None], ...]:
        body = os.urandom(size)
        checks = [lambda s=self.ed.sign(body), k=self.ed.public_key(): k.verify(s, body)]
        if hybrid:
            checks.append(lambda s=self.ml.sign(body), k=self.ml.public_key(): k.verify(s, body))
        return tuple(checks)


def _message_ceiling(mode: CryptoMode, raw: _Raw) -> Callable[[int], None]:
    hybrid = mode.uses_pq

    def run(i: int) -> None:
        raw.aead_round()
        raw.aead_round()
        raw.dh_keygen_pair()  # sealed-sender KEM (X25519 part)
        if hybrid:
            raw.kem_pair()  # sealed-sender KEM (ML-KEM part of X-Wing)
        if i % TURN_EVERY == 0:  # one ratchet turn every TURN_EVERY messages
            raw.dh_keygen_pair()
        if hybrid and i % EPOCH_INTERVAL == 0:  # one post-quantum epoch (at most this often)
            raw.kem_pair(keygen=True)

    return run


def _pqxdh_ceiling(mode: CryptoMode, raw: _Raw) -> Callable[[], None]:
    hybrid = mode.uses_pq
    checks = raw.signed(80, hybrid) * 2 + (raw.signed(1250, hybrid) if hybrid else ())  # X25519 prekeys, ML-KEM prekey
    peer = [x25519.X25519PrivateKey.generate() for _ in range(4)]
    peer_pub = [p.public_key() for p in peer]

    def run() -> None:
        for check in checks:
            check()
        eph = x25519.X25519PrivateKey.generate()
        eph_pub = eph.public_key()
        for pub in peer_pub:  # initiator: 4 DH
            eph.exchange(pub)
        for p in peer:  # responder: 4 DH
            p.exchange(eph_pub)
        if hybrid:
            raw.kem_pair()

    return run


# Timing ------------------------------------------------------------------------------------


def _alternate(figure: Callable[[int], None], ceiling: Callable[[int], None], chunk: int, budget: float, prepare=None) -> tuple[float, float]:  # noqa: ANN001
    """Run ``figure`` and ``ceiling`` ``chunk`` times each, alternating, until ``budget``
    seconds have passed (at least twice each); returns (figure per s, ceiling per s)."""
    f_time = c_time = 0.0
    done = 0
    deadline = time.perf_counter() + budget
    while done < 2 * chunk or time.perf_counter() < deadline:
        if prepare is not None:
            prepare(chunk)
        start = time.perf_counter()
        for i in range(chunk):
            figure(done + i)
        f_time += time.perf_counter() - start
        start = time.perf_counter()
        for i in range(chunk):
            ceiling(done + i)
        c_time += time.perf_counter() - start
        done += chunk
    return done / f_time, done / c_time


def _messages(mode: CryptoMode, budget: float, raw: _Raw) -> tuple[float, float]:
    node_key = SigningKey.generate(mode, rng)
    alice, bob = _device(mode, node_key, "alice"), _device(mode, node_key, "bob")
    spk = generate_prekey(bob.identity, X25519, 1, rng)
    store, published = _prekeys(mode, bob, spk, 100)
    alice.record, bob.record = _setup(mode, alice, bob, store, published)
    _send_and_receive(bob, alice, node_key.public)  # Bob answers: both sides have turned
    pair = (alice, bob)

    def one(i: int) -> None:
        sender = pair[(i // TURN_EVERY) % 2]
        _send_and_receive(sender, pair[1 - pair.index(sender)], node_key.public)

    return _alternate(one, _message_ceiling(mode, raw), 2 * TURN_EVERY, budget)


def _sessions(mode: CryptoMode, budget: float, raw: _Raw) -> tuple[float, float]:
    node_key = SigningKey.generate(mode, rng)
    alice, bob = _device(mode, node_key, "alice"), _device(mode, node_key, "bob")
    spk = generate_prekey(bob.identity, X25519, 1, rng)
    pool: list[tuple[dict, dict]] = []
    next_id = [100]

    def prepare(n: int) -> None:  # untimed: Bob publishes fresh one-time prekeys
        pool.clear()
        for _ in range(n):
            pool.append(_prekeys(mode, bob, spk, next_id[0]))
            next_id[0] += 1

    def one(i: int) -> None:
        store, published = pool[i % len(pool)]
        _setup(mode, alice, bob, store, published)

    ceiling = _pqxdh_ceiling(mode, raw)
    return _alternate(one, lambda _i: ceiling(), 10, budget, prepare)


def measure(quick: bool) -> dict[str, float | int]:
    """Four figures with ceilings; about 5 s quick, 40 s full (~10 s per figure)."""
    budget = 0.6 if quick else 9.0
    raw = _Raw()
    out: dict[str, float | int] = {}
    out["client_hybrid_msgs_per_s"], out["client_hybrid_msgs_per_s_ceiling"] = _messages(CryptoMode.HYBRID, budget, raw)
    out["client_classical_msgs_per_s"], out["client_classical_msgs_per_s_ceiling"] = _messages(CryptoMode.CLASSICAL, budget, raw)
    out["pqxdh_sessions_per_s"], out["pqxdh_sessions_per_s_ceiling"] = _sessions(CryptoMode.HYBRID, budget, raw)
    out["pqxdh_sessions_per_s_classical"], out["pqxdh_sessions_per_s_classical_ceiling"] = _sessions(CryptoMode.CLASSICAL, budget, raw)
    return {k: round(v, 1) for k, v in out.items()}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure("--quick" in sys.argv), indent=2))
