"""Test-only oracle: the ML-DSA-65 public key of an expanded (4032-byte) private key.

The NIST ACVP sigGen vectors give only the expanded private key, which ``cryptography`` cannot
load (it takes 32-byte seeds only), and no public key, which is needed to verify their
signatures. FIPS 204 defines pk = rho || SimpleBitPack(t1) with t1 = Power2Round(A*s1 + s2), all
of which is in the expanded key, so it is recomputed here (Algorithms 32, 33, 35, 41, 42).

Self-check: the expanded key also holds tr = H(pk, 64); :func:`public_from_expanded` insists that
the recomputed pk hashes to it, so a mistake here fails loudly instead of producing a wrong pk.
This is not product code and is never used to sign or to verify anything by itself.
"""

from __future__ import annotations

import hashlib

Q = 8380417
K, L, ETA, D = 6, 5, 4, 13
_ZETAS = [pow(1753, int(f"{i:08b}"[::-1], 2), Q) for i in range(256)]
_N_INV = pow(256, -1, Q)


def _ntt(w: list[int]) -> list[int]:
    w = list(w)
    m, length = 0, 128
    while length >= 1:
        for start in range(0, 256, 2 * length):
            m += 1
            z = _ZETAS[m]
            for j in range(start, start + length):
                t = z * w[j + length] % Q
                w[j + length] = (w[j] - t) % Q
                w[j] = (w[j] + t) % Q
        length //= 2
    return w


def _ntt_inv(w: list[int]) -> list[int]:
    w = list(w)
    m, length = 256, 1
    while length < 256:
        for start in range(0, 256, 2 * length):
            m -= 1
            z = Q - _ZETAS[m]
            for j in range(start, start + length):
                t = w[j]
                w[j] = (t + w[j + length]) % Q
                w[j + length] = z * (t - w[j + length]) % Q
        length *= 2
    return [x * _N_INV % Q for x in w]


def _rej_ntt_poly(seed: bytes) -> list[int]:
    n = 840
    while True:
        stream = hashlib.shake_128(seed).digest(n)
        out: list[int] = []
        for i in range(0, n - 2, 3):
            z = stream[i] | (stream[i + 1] << 8) | ((stream[i + 2] & 0x7F) << 16)
            if z < Q:
                out.append(z)
                if len(out) == 256:
                    return out
        n *= 2


def _unpack_eta(data: bytes) -> list[int]:
    coeffs = []
    for b in data:
        coeffs.append((ETA - (b & 0xF)) % Q)
        coeffs.append((ETA - (b >> 4)) % Q)
    return coeffs


def public_from_expanded(sk: bytes) -> bytes:
    assert len(sk) == 4032, len(sk)
    rho, tr = sk[:32], sk[64:128]
    off = 128
    s1 = [_unpack_eta(sk[off + 128 * i : off + 128 * (i + 1)]) for i in range(L)]
    off += 128 * L
    s2 = [_unpack_eta(sk[off + 128 * i : off + 128 * (i + 1)]) for i in range(K)]
    s1_hat = [_ntt(p) for p in s1]
    packed = bytearray(rho)
    for r in range(K):
        acc = [0] * 256
        for s in range(L):
            a = _rej_ntt_poly(rho + bytes([s, r]))
            sh = s1_hat[s]
            acc = [(x + y * z) % Q for x, y, z in zip(acc, a, sh)]
        t = [(x + y) % Q for x, y in zip(_ntt_inv(acc), s2[r])]
        value = 0
        for i, c in enumerate(t):
            r0 = c & ((1 << D) - 1)
            if r0 > 1 << (D - 1):
                r0 -= 1 << D
            value |= ((c - r0) >> D) << (10 * i)
        packed += value.to_bytes(320, "little")
    pk = bytes(packed)
    if hashlib.shake_256(pk).digest(64) != tr:
        raise AssertionError("recomputed ML-DSA-65 public key does not hash to tr of the private key")
    return pk
