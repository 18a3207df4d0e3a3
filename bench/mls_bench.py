"""MLS (RFC 9420, ``sonet.core.mls.group``) at 1,500 members, X-Wing suite 0x004D and suite 1.

Everything runs in this process through the public ``Group`` API (create, commit, process, merge,
join, encrypt); randomness is ``os.urandom``. Key packages (every member's signature and HPKE
keys) are made before anything is timed. Each figure is the median of a few runs of the same
operation on the same epoch: a commit is only staged, so it can be made again, and processing a
commit or joining by a Welcome changes nothing until it is merged. Wall time (``perf_counter``)
gives ``..._ms``, CPU time of the process (``process_time``) ``..._cpu_ms``; the machine is shared,
so the CPU figure is the steadier one.

The group: member 0 (the creator) adds the 1,499 others in one commit; B (a member in the middle
of the tree, not the creator), C (another, far from B) and the members that fill the tree below
join by that commit's Welcome.

``mls_<suite>_create_commit_ms`` -- the creator's ``commit`` of 1,499 Add proposals, Welcome
included (KeyPackages checked, no path: Adds alone need none).
``..._update_commit_ms`` -- B's Update commit with path (``commit(path=True)``), in the tree
right after the 1,499 adds: every parent node is blank, so each node of B's path is encrypted
to the leaves of its copath subtree, ~n HPKE encryptions in all.
``..._process_commit_ms`` -- C processes that commit (bytes in, StagedCommit out).
``..._update_commit_filled_ms`` / ``..._process_commit_filled_ms`` -- the same once B's copath
nodes are filled: one member in each subtree of B's copath committed once (as after every
member has committed once, as far as B's path is concerned); B's path then encrypts to one
node per level (plus any unmerged leaves).
``..._add_commit_ms`` -- B's commit adding one member (commit + Welcome with the ratchet tree,
no path) in the filled tree; ``..._join_ms`` -- that member's ``Group.join`` by the Welcome
(validates the whole tree: every leaf's signature, tree hash, parent hashes).
``..._remove_commit_ms`` / ``..._remove_commit_filled_ms`` -- B removes one member (a path is
required), sparse tree / filled tree.
``..._app_message_us`` -- B encrypts 1 KiB of application data, C decrypts it.

``<figure>_ceiling`` -- measured in the same run, the operations RFC 9420 requires for that
operation, counted from the tree, done back to back with the same primitives (the suite's
``CipherSuite`` labeled operations): HPKE EncryptWithLabel to each node of each copath
resolution (to the real public keys), DecryptWithLabel, DeriveKeyPair per derived node key, a
fresh key pair per new leaf, SignWithLabel / VerifyWithLabel over messages of the real sizes,
the hashes of the tree hash and parent hash nodes that change (all of them for a new tree), the
AEAD of the encrypted GroupInfo and of application messages, KDF expands of path secrets and
ratchets. Not in it: encoding, decoding, the key schedule's dozen expands. The counts are in
``mls_<suite>_<operation>_<primitive>`` (e.g. ``mls_xwing_update_hpke_encryptions``); the
update's encryption count is checked against the ciphertexts in the commit.

``--quick``: 48 members, two runs each: seconds, it checks the code, not the machine.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.extensions import Capabilities, Lifetime
from sonet.core.mls.framing import MLSMessage
from sonet.core.mls.group import ApplicationMessage, Group, StagedCommit
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode, LeafNodeSource
from sonet.core.mls.messages import Add, Commit, Remove, Welcome
from sonet.core.mls.tree import RatchetTree
from sonet.core.mls.tree_math import direct_path, leaf_to_node, level, sibling

__all__ = ["measure"]

SUITES = (("xwing", 0x004D), ("suite1", 0x0001))
GROUP_ID = b"bench group"
PAYLOAD = os.urandom(1024)
rng = os.urandom


@dataclass
class _Member:
    key_package: KeyPackage
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes
    group: Group | None = None

    @property
    def g(self) -> Group:
        assert self.group is not None
        return self.group

    def join(self, cs: CipherSuite, welcome: Welcome) -> Group:
        return Group.join(
            cs, welcome, self.key_package, init_priv=self.init_priv, encryption_priv=self.encryption_priv,
            signature_priv=self.signature_priv,
        )  # fmt: skip


def _member(cs: CipherSuite, number: int) -> _Member:
    sig_priv, sig_pub = cs.signature_key_pair(rng)
    enc_priv, enc_pub = cs.hpke_key_pair(rng)
    init_priv, init_pub = cs.hpke_key_pair(rng)
    leaf = LeafNode(
        enc_pub, sig_pub, Credential.basic(b"member-%d" % number), Capabilities(cipher_suites=(cs.id,), credentials=(1,)),
        LeafNodeSource.KEY_PACKAGE, Lifetime(0, 2**64 - 1),
    ).signed(cs, sig_priv)  # fmt: skip
    return _Member(KeyPackage(cs.id, init_pub, leaf).signed(cs, sig_priv), init_priv, enc_priv, sig_priv)


# ---- what the RFC requires, and doing just that ---------------------------------------------


@dataclass
class _Ops:
    """The primitive operations one MLS operation requires."""

    encryptions: list[bytes] = field(default_factory=list)  # recipients' HPKE public keys
    encryption_plaintext: int = 32
    decryptions: int = 0
    derive_key_pairs: int = 0
    key_pairs: int = 0
    signatures: list[int] = field(default_factory=list)  # message sizes
    verifications: list[int] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)  # input sizes
    expands: int = 0
    aead: list[int] = field(default_factory=list)  # sizes sealed (or opened)

    def counts(self, prefix: str) -> dict[str, int]:
        return {
            f"{prefix}_hpke_encryptions": len(self.encryptions),
            f"{prefix}_hpke_decryptions": self.decryptions,
            f"{prefix}_derive_key_pairs": self.derive_key_pairs + self.key_pairs,
            f"{prefix}_signatures": len(self.signatures),
            f"{prefix}_verifications": len(self.verifications),
            f"{prefix}_hashes": len(self.hashes),
        }


def _ceiling_run(cs: CipherSuite, ops: _Ops, context: bytes) -> Callable[[], None]:
    """A function doing ``ops`` back to back (inputs prepared here, outside the timing)."""
    sig_priv, sig_pub = cs.signature_key_pair(rng)
    signing_key = cs.signature_private_key(sig_priv)
    to_verify = []
    for size in ops.verifications:
        message = rng(size)
        to_verify.append((message, cs.sign_with_label(signing_key, b"LeafNodeTBS", message)))
    hpke_priv, hpke_pub = cs.hpke_key_pair(rng)
    plaintext = rng(ops.encryption_plaintext)
    to_decrypt = [cs.encrypt_with_label(hpke_pub, b"UpdatePathNode", context, plaintext, rng) for _ in range(ops.decryptions)]
    parsed_priv = cs.hpke_private_key(hpke_priv)
    ikms = [rng(cs.nh) for _ in range(ops.derive_key_pairs)]
    hash_inputs = [rng(size) for size in ops.hashes]
    messages = [rng(size) for size in ops.signatures]
    aead_inputs = [rng(size) for size in ops.aead]
    key, nonce, secret = rng(cs.nk), rng(cs.nn), rng(cs.nh)

    def run() -> None:
        for pub in ops.encryptions:
            cs.encrypt_with_label(pub, b"UpdatePathNode", context, plaintext, rng)
        for kem_output, ciphertext in to_decrypt:
            cs.decrypt_with_label(parsed_priv, b"UpdatePathNode", context, kem_output, ciphertext)
        for ikm in ikms:
            cs.derive_key_pair(ikm)
        for _ in range(ops.key_pairs):
            cs.hpke_key_pair(rng)
        for message in messages:
            cs.sign_with_label(signing_key, b"LeafNodeTBS", message)
        for message, signature in to_verify:
            cs.verify_with_label(sig_pub, b"LeafNodeTBS", message, signature)
        for data in hash_inputs:
            cs.hash(data)
        for _ in range(ops.expands):
            cs.derive_secret(secret, b"path")
        for data in aead_inputs:
            cs.seal(key, nonce, b"", data)

    return run


# ---- timing -----------------------------------------------------------------------------------


def _median_times(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """(wall, cpu) medians in ms over ``runs`` calls."""
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        run()
        walls.append((time.perf_counter() - w0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def _figure(
    out: dict, name: str, run: Callable[[], object], ceiling: Callable[[], None], runs: int, unit: str = "ms", per: int = 1
) -> None:
    """``name_<unit>`` (wall) and ``name_cpu_<unit>`` with their ceilings, runs alternating."""
    scale = 1000 / per if unit == "us" else 1 / per
    walls, cpus, cwalls, ccpus = [], [], [], []
    for _ in range(runs):  # alternate, so both see the same noise
        w, c = _median_times(run, 1)
        walls.append(w), cpus.append(c)
        w, c = _median_times(ceiling, 1)
        cwalls.append(w), ccpus.append(c)
    out[f"{name}_{unit}"] = round(statistics.median(walls) * scale, 3)
    out[f"{name}_{unit}_ceiling"] = round(statistics.median(cwalls) * scale, 3)
    out[f"{name}_cpu_{unit}"] = round(statistics.median(cpus) * scale, 3)
    out[f"{name}_cpu_{unit}_ceiling"] = round(statistics.median(ccpus) * scale, 3)


# ---- counting from the tree -------------------------------------------------------------------


def _leaf_size(tree: RatchetTree) -> int:
    leaf = next(leaf for _, leaf in tree.leaves())
    return len(leaf.to_bytes())


def _path_ops(tree: RatchetTree, committer: int, context: bytes, message_size: int) -> _Ops:
    """A commit with path by ``committer`` on ``tree`` (proposals applied): a fresh leaf key
    pair, DeriveKeyPair and two expands per filtered direct path node, an encryption to each
    node of each copath child's resolution, the leaf and the content signed, the tree hash of
    the path's nodes and leaf, a parent hash per path node, the confirmed transcript hash and
    the membership tag over the whole message, the interim transcript hash."""
    filtered = tree.filtered_direct_path(committer)
    recipients = [r for _, s in filtered for r in tree.resolution(s)]
    keys = []
    for r in recipients:
        node = tree.node(r)
        assert node is not None
        keys.append(node.encryption_key)
    leaf_size = _leaf_size(tree)
    path_len = len(direct_path(leaf_to_node(committer), tree.n_leaves))
    return _Ops(
        encryptions=keys,
        encryption_plaintext=tree.cs.nh,
        key_pairs=1,
        derive_key_pairs=len(filtered),
        signatures=[leaf_size + len(context), message_size],
        hashes=[leaf_size] + [200] * (path_len + len(filtered) + 1) + [message_size] * 2,
        expands=2 * len(filtered),
    )


def _process_ops(tree: RatchetTree, committer: int, receiver: int, context: bytes, message_size: int) -> _Ops:
    """Processing a commit with path: the content's and the new leaf's signatures, one
    decryption, DeriveKeyPair of each path node from the lowest common one up (checked
    against the path's keys), the same hashes as the committer."""
    filtered = tree.filtered_direct_path(committer)
    mine = set(direct_path(leaf_to_node(receiver), tree.n_leaves))
    position = next(i for i, (p, _) in enumerate(filtered) if p in mine)
    leaf_size = _leaf_size(tree)
    path_len = len(direct_path(leaf_to_node(committer), tree.n_leaves))
    derived = len(filtered) - position
    return _Ops(
        decryptions=1,
        encryption_plaintext=tree.cs.nh,
        derive_key_pairs=derived,
        verifications=[leaf_size + len(context), message_size],
        hashes=[leaf_size] + [200] * (path_len + len(filtered) + 1) + [message_size] * 2,
        expands=2 * derived,
    )


def _ciphertexts(message: MLSMessage) -> int:
    commit = Commit.from_bytes(message.body.content.body)  # type: ignore[union-attr]
    assert commit.path is not None
    return sum(len(node.encrypted_path_secret) for node in commit.path.nodes)


# ---- one suite -----------------------------------------------------------------------------


def _copath_fillers(n_leaves_tree: int, members: int, b: int, taken: set[int]) -> list[int]:
    """One member leaf in each subtree of ``b``'s copath (the lowest leaf index there)."""
    out = []
    for s in [sibling(x, n_leaves_tree) for x in [leaf_to_node(b), *direct_path(leaf_to_node(b), n_leaves_tree)[:-1]]]:
        half = (1 << level(s)) - 1
        candidates = [i for i in range((s - half) // 2, (s + half) // 2 + 1) if i < members and i not in taken]
        if candidates:
            out.append(candidates[0])
    return out


def _measure_suite(name: str, cs: CipherSuite, n: int, runs: int) -> dict:
    out: dict = {}
    p = f"mls_{name}"
    members = [_member(cs, i) for i in range(n + 1)]  # the last one is added in (d)
    creator, newcomer = members[0], members[n]
    creator.group = Group.create(
        cs, GROUP_ID, creator.key_package.leaf_node, signature_priv=creator.signature_priv,
        encryption_priv=creator.encryption_priv, rng=rng,
    )  # fmt: skip
    adds = [Add(m.key_package) for m in members[1:n]]

    # (a) the creator adds everyone
    made: list = []

    def create_commit() -> None:
        made[:] = creator.g.commit(rng, proposals=adds)

    create_commit()
    staged, commit_message, welcome = made
    message_size = len(commit_message.to_bytes())
    tree = staged.state.tree
    context = staged.state.context.to_bytes()
    leaf_size = _leaf_size(tree)
    welcome_size = len(welcome.encrypted_group_info)
    create_ops = _Ops(
        encryptions=[m.key_package.init_key for m in members[1:n]],
        encryption_plaintext=cs.nh + 3,  # GroupSecrets: joiner_secret<V>, no path secret, no PSKs
        verifications=[leaf_size + 20, leaf_size + 50] * (n - 1),  # KeyPackage and its leaf
        signatures=[message_size, welcome_size],  # commit content, GroupInfo
        # KeyPackageRefs, the tree hash of every node, transcript hashes and membership tag
        hashes=[leaf_size + 60] * (n - 1) + [leaf_size] * tree.n_leaves + [200] * (tree.n_leaves - 1) + [message_size] * 2 + [200],
        aead=[welcome_size],
    )
    out.update(create_ops.counts(f"{p}_create"))
    _figure(out, f"{p}_create_commit", create_commit, _ceiling_run(cs, create_ops, context), max(2, runs // 2))
    staged, _, welcome = made
    creator.g.merge(staged)

    b, c = n // 2, n - 1 if n > 2 else 1
    fillers = _copath_fillers(tree.n_leaves, n, b, {0, b, c})
    for i in (b, c, *fillers):
        members[i].group = members[i].join(cs, welcome)
    real = [creator, *(members[i] for i in (b, c, *fillers))]

    def update_and_process(suffix: str) -> None:
        g_b, g_c = members[b].g, members[c].g
        message: list = []

        def update() -> None:
            message[:] = g_b.commit(rng, path=True)[:2]

        update()
        assert message[0].state is not None
        new_tree = message[0].state.tree
        ops = _path_ops(g_b.tree, b, context, len(message[1].to_bytes()))
        assert len(ops.encryptions) == _ciphertexts(message[1]), "counted encryptions differ from the commit's"
        out.update(ops.counts(f"{p}_update{suffix}"))
        _figure(out, f"{p}_update_commit{suffix}", update, _ceiling_run(cs, ops, context), runs)
        data = message[1].to_bytes()

        def process() -> None:
            assert isinstance(g_c.process(data), StagedCommit)

        ops = _process_ops(new_tree, b, c, context, len(data))
        out.update(ops.counts(f"{p}_process{suffix}"))
        _figure(out, f"{p}_process_commit{suffix}", process, _ceiling_run(cs, ops, context), runs)

    def remove(suffix: str) -> None:
        g_b = members[b].g
        victim = b ^ 1  # B's neighbour: the nodes the removal blanks are on B's own path

        made: list = []

        def commit() -> None:
            made[:] = g_b.commit(rng, proposals=[Remove(victim)])

        after = g_b.tree.copy()
        after.remove_leaf(victim)
        commit()
        ops = _path_ops(after, b, context, len(made[1].to_bytes()))
        assert len(ops.encryptions) == _ciphertexts(made[1]), "counted encryptions differ from the commit's"
        ops.verifications = []
        out.update(ops.counts(f"{p}_remove{suffix}"))
        _figure(out, f"{p}_remove_commit{suffix}", commit, _ceiling_run(cs, ops, context), runs)

    # (b), (c), (e) in the tree right after the adds: parents blank
    update_and_process("")
    remove("")

    # fill B's copath: each filler commits once, everyone real follows
    for f in fillers:
        staged_f, message_f, _ = members[f].g.commit(rng, path=True)
        data = message_f.to_bytes()
        for m in real:
            if m is not members[f]:
                result = m.g.process(data)
                assert isinstance(result, StagedCommit)
                m.g.merge(result)
        members[f].g.merge(staged_f)
    filled_tree = members[b].g.tree
    out[f"{p}_filled_fillers"] = len(fillers)
    update_and_process("_filled")
    remove("_filled")

    # (d) B adds one member; it joins by the Welcome
    g_b = members[b].g
    add_made: list = []

    def add() -> None:
        add_made[:] = g_b.commit(rng, proposals=[Add(newcomer.key_package)])

    add()
    staged_add, add_message, welcome_add = add_made
    add_size = len(add_message.to_bytes())
    assert welcome_add is not None and staged_add.state is not None
    added_tree = staged_add.state.tree
    size = len(welcome_add.encrypted_group_info)
    path_len = len(direct_path(leaf_to_node(n), added_tree.n_leaves))
    add_ops = _Ops(
        encryptions=[newcomer.key_package.init_key],
        encryption_plaintext=cs.nh + 3,
        verifications=[leaf_size + 20, leaf_size + 50],
        signatures=[add_size, size],
        hashes=[leaf_size + 60, leaf_size] + [200] * (path_len + 1) + [add_size] * 2,
        aead=[size],
    )
    out.update(add_ops.counts(f"{p}_add"))
    _figure(out, f"{p}_add_commit", add, _ceiling_run(cs, add_ops, context), runs)
    welcome_add = add_made[2]

    def join() -> None:
        newcomer.join(cs, welcome_add)

    parents = sum(1 for _ in added_tree.parents())
    join_ops = _Ops(
        decryptions=1,
        encryption_plaintext=cs.nh + 3,
        verifications=[size] + [leaf_size + 50] * sum(1 for _ in added_tree.leaves()),  # GroupInfo, every leaf
        hashes=[leaf_size + 60] + [leaf_size] * added_tree.n_leaves + [200] * (added_tree.n_leaves - 1) + [200] * parents,
        aead=[size],
    )
    out.update(join_ops.counts(f"{p}_join"))
    _figure(out, f"{p}_join", join, _ceiling_run(cs, join_ops, context), max(2, runs // 2))
    out[f"{p}_members"] = n
    out[f"{p}_filled_parent_nodes"] = sum(1 for _ in filled_tree.parents())
    out[f"{p}_tree_parent_nodes"] = filled_tree.n_leaves - 1

    # (f) application message: B encrypts, C decrypts
    g_c = members[c].g
    per = 20

    def app() -> None:
        for _ in range(per):
            result = g_c.process(g_b.encrypt(PAYLOAD, rng).to_bytes())
            assert isinstance(result, ApplicationMessage)

    padded = len(PAYLOAD) + 100
    app_ops = _Ops(
        signatures=[padded] * per, verifications=[padded] * per, aead=[padded, 40] * 2 * per, expands=10 * per
    )
    out.update({k: v // per for k, v in app_ops.counts(f"{p}_app").items()})
    app()  # the first message of a sender walks down the secret tree
    _figure(out, f"{p}_app_message", app, _ceiling_run(cs, app_ops, context), max(3, runs), unit="us", per=per)
    return out


def measure(quick: bool) -> dict:
    n = 48 if quick else 1500
    runs = 2 if quick else 5
    results: dict = {}
    for name, suite in SUITES:
        results.update(_measure_suite(name, cipher_suite(suite), n, runs))
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(measure("--quick" in sys.argv), indent=2))
