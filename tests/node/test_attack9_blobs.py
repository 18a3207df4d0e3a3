"""Attack round 9 on the blob store's disk reserve (node/blobs.py): the reserve of ``[storage]``
was checked only when a blob was created, against the disk as it was then. Uploads under way
were not counted, so several accounts could each create a blob that fit, then upload them all
into the reserve that keeps acknowledgements, deletes and expiry working. Each chunk is now
checked before it is written: past the reserve it is refused ``disk_full``, nothing of it is
kept, and the upload resumes from what the node holds once there is room."""

from __future__ import annotations

import hashlib
import os
from collections import namedtuple
from pathlib import Path

import pytest

from sonet.node import blobs as blobs_module
from sonet.node.blob_settings import BlobSettings
from sonet.node.blobs import BLOBS_DIR, BlobStore
from sonet.node.client_checks import RequestError

RESERVE = 10_000
Usage = namedtuple("Usage", "total used free")


class Disk:
    """A disk of ``room`` bytes above the reserve, minus what the blob files take, minus
    ``others`` (the database, say)."""

    def __init__(self, root: Path, room: int) -> None:
        self.root = root
        self.room = room
        self.others = 0

    def usage(self, path: object) -> Usage:
        written = sum(p.stat().st_size for p in (self.root / BLOBS_DIR).glob("*.part")) + sum(
            p.stat().st_size for p in (self.root / BLOBS_DIR).glob("*.blob")
        )
        free = RESERVE + self.room - written - self.others
        return Usage(10**12, 10**12 - free, free)


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Disk:
    disk = Disk(tmp_path, room=3000)
    monkeypatch.setattr(blobs_module.shutil, "disk_usage", disk.usage)
    return disk


async def test_uploads_that_each_fit_cannot_together_take_the_reserve(tmp_path: Path, disk: Disk) -> None:
    store = await BlobStore.open(tmp_path, BlobSettings(), rng=os.urandom, reserve_bytes=RESERVE)
    first, second = os.urandom(2000), os.urandom(2000)
    a = await store.create("a@alpha.example", len(first), hashlib.sha256(first).digest(), now=1)
    b = await store.create("b@alpha.example", len(second), hashlib.sha256(second).digest(), now=1)
    assert (await store.put("a@alpha.example", a.id, 0, first)).complete
    with pytest.raises(RequestError) as refused:
        await store.put("b@alpha.example", b.id, 0, second)
    assert refused.value.code == "disk_full"
    assert store.owned("b@alpha.example", b.id).stored == 0  # nothing of the chunk kept
    assert disk.usage(tmp_path).free >= RESERVE
    disk.room += 2000  # room again: the upload goes on from what the node holds
    assert (await store.put("b@alpha.example", b.id, 0, second)).complete


async def test_a_chunk_is_refused_when_other_writes_took_the_room(tmp_path: Path, disk: Disk) -> None:
    store = await BlobStore.open(tmp_path, BlobSettings(), rng=os.urandom, reserve_bytes=RESERVE)
    data = os.urandom(2000)
    info = await store.create("a@alpha.example", len(data), hashlib.sha256(data).digest(), now=1)
    assert (await store.put("a@alpha.example", info.id, 0, data[:1000])).stored == 1000
    disk.others = 1500  # the mailbox grew meanwhile
    with pytest.raises(RequestError) as refused:
        await store.put("a@alpha.example", info.id, 1000, data[1000:])
    assert refused.value.code == "disk_full"
    assert store.owned("a@alpha.example", info.id).stored == 1000
    assert disk.usage(tmp_path).free >= RESERVE
    disk.others = 0
    assert (await store.put("a@alpha.example", info.id, 1000, data[1000:])).complete
