"""Image thumbnails (client/thumbnails.py, core/thumbnail.py): made on the sending device with
the EXIF orientation applied and no metadata (no EXIF/GPS, ICC profile, comment, XMP); none for a
non-image, a truncated or a huge image, whose file still goes; a forged thumbnail in a received
file map is refused (content_malformed) by the decoder, one that passes it but is not the JPEG
it claims is refused when saved (file_corrupt); recv/history show its size, never its bytes;
``sonet download --thumbnail`` saves it; 1:1 and in groups."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from sonet.client.cli_groups import group_message_json
from sonet.client.sdk import Device
from sonet.client.thumbnails import MAX_SOURCE_PIXELS, make_thumbnail, thumbnail_problem
from sonet.core import canonical, limits
from sonet.core.attachment import FileRef
from sonet.core.content import Content, decode_content, encode_content
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.thumbnail import MAX_THUMBNAIL_BYTES, MAX_THUMBNAIL_SIDE, Thumbnail
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, run_cli

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]
GPS_LAT = (48, 51, 29)  # degrees, minutes, seconds: looked for in the thumbnail's bytes
MAKE = "SecretCam-9000"


def _photo_with_gps(path: Path, size: tuple[int, int] = (1200, 800), orientation: int = 6) -> None:
    """A JPEG with EXIF (camera, GPS position, orientation), an ICC profile and a comment."""
    im = Image.new("RGB", size, (200, 30, 30))
    im.paste((30, 30, 200), (0, 0, size[0] // 2, size[1] // 4))  # a mark so orientation shows
    exif = Image.Exif()
    exif[0x010F] = MAKE  # Make
    exif[0x0112] = orientation
    exif[0x8825] = {1: "N", 2: GPS_LAT, 3: "E", 4: (2, 17, 40)}  # GPSInfo
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im.save(path, format="JPEG", exif=exif, icc_profile=icc, comment=b"taken at home")
    got = Image.open(path)
    assert got.getexif().get_ifd(0x8825)[2] == GPS_LAT and "icc_profile" in got.info  # the source has it all


def test_thumbnail_is_upright_small_and_has_no_metadata(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    _photo_with_gps(path, orientation=6)  # 6: rotate 90° clockwise to show: 1200x800 stands as 800x1200
    thumb = make_thumbnail(path)
    assert thumb is not None
    assert (thumb.width, thumb.height) == (171, 256)  # upright (portrait), fits 256x256
    assert 0 < len(thumb.data) <= MAX_THUMBNAIL_BYTES
    im = Image.open(io.BytesIO(thumb.data))
    assert im.format == "JPEG" and im.size == (171, 256)
    assert len(im.getexif()) == 0 and not im.getexif().get_ifd(0x8825)
    assert not {"exif", "icc_profile", "comment", "xmp"} & im.info.keys(), im.info.keys()
    for needle in (b"Exif", b"GPS", MAKE.encode(), b"taken at home", b"ICC_PROFILE", b"http://ns.adobe.com"):
        assert needle not in thumb.data, needle
    lat = b"".join(struct.pack(">II", n, 1) for n in GPS_LAT)  # the EXIF rationals as a TIFF writes them
    assert lat not in thumb.data and struct.pack("<II", 48, 1) not in thumb.data
    # the blue mark was at the top left; turned 90° clockwise it is at the top right
    top_right, top_left = im.convert("RGB").getpixel((165, 5)), im.convert("RGB").getpixel((5, 5))
    assert top_right[2] > 150 and top_left[0] > 150, (top_left, top_right)


def test_transparent_png_and_small_images(tmp_path: Path) -> None:
    path = tmp_path / "icon.png"
    Image.new("RGBA", (40, 20), (0, 0, 0, 0)).save(path)
    thumb = make_thumbnail(path)
    assert thumb is not None and (thumb.width, thumb.height) == (40, 20)  # never enlarged
    assert Image.open(io.BytesIO(thumb.data)).convert("RGB").getpixel((3, 3)) > (240, 240, 240)  # on white


def test_no_thumbnail_for_what_is_not_a_readable_bounded_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_bytes(b"not an image at all" * 100)
    whole = tmp_path / "whole.jpg"
    _photo_with_gps(whole)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    huge = tmp_path / "bomb.png"  # a 20000x20000 PNG header: 400 megapixels, never decoded
    Image.new("1", (20_000, 20_000)).save(huge)
    assert huge.stat().st_size < 1_000_000 and 20_000 * 20_000 > MAX_SOURCE_PIXELS
    big = tmp_path / "big.png"  # 60 megapixels: below Pillow's own bomb limit, above this cap
    Image.new("1", (10_000, 6_000)).save(big)
    assert 10_000 * 6_000 > MAX_SOURCE_PIXELS and 10_000 * 6_000 < Image.MAX_IMAGE_PIXELS
    tiff = tmp_path / "scan.tiff"  # not one of the formats thumbnails are made of
    Image.new("RGB", (30, 30)).save(tiff)
    for path in (text, truncated, huge, big, tiff, tmp_path / "missing.jpg"):
        assert make_thumbnail(path) is None, path


def _ref(thumbnail: object) -> dict:
    ref = FileRef(
        node="alpha.test", blob=b"\x01" * 16, key=b"\x02" * 32, sha256=b"\x03" * 32, sealed_sha256=b"\x04" * 32,
        size=40_000, media_type="image/jpeg", name="photo.jpg",
    ).to_map()  # fmt: skip
    return {**ref, "thumbnail": thumbnail}


JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 100


def test_thumbnail_round_trips_and_the_largest_fits_a_synced_content_with_the_longest_caption() -> None:
    thumb = Thumbnail(data=b"\xff\xd8\xff" + b"\x55" * (MAX_THUMBNAIL_BYTES - 3), width=MAX_THUMBNAIL_SIDE, height=1)
    ref = FileRef.from_map(_ref(thumb.to_map()))
    assert ref.thumbnail == thumb and "Thumbnail(256x1, 24576 bytes)" in repr(ref)
    content = Content.make_file(id=b"\x09" * 16, sent_at=5, file=ref, text="x" * limits.MAX_TEXT_LEN)
    raw = encode_content(content)
    assert decode_content(raw) == content
    sync = Content(type="sync", id=content.id, sent_at=5, to=BOB, inner=content)
    assert len(encode_content(sync)) <= limits.MAX_CONTENT_BYTES and decode_content(encode_content(sync)) == sync


@pytest.mark.parametrize(
    "forged",
    [
        {"data": b"\xff\xd8\xff" + b"\0" * MAX_THUMBNAIL_BYTES, "width": 10, "height": 10},  # oversized
        {"data": b"", "width": 10, "height": 10},
        {"data": b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "width": 10, "height": 10},  # not a JPEG
        {"data": b"<svg onload=alert(1)>", "width": 10, "height": 10},
        {"data": JPEG, "width": MAX_THUMBNAIL_SIDE + 1, "height": 10},
        {"data": JPEG, "width": 0, "height": 10},
        {"data": JPEG, "width": 10, "height": -1},
        {"data": JPEG, "width": 10.0, "height": 10},
        {"data": JPEG, "width": True, "height": 10},
        {"data": JPEG.hex(), "width": 10, "height": 10},
        {"data": JPEG, "width": 10},
        {"data": JPEG, "width": 10, "height": 10, "exif": b""},
        JPEG,
        None,
    ],
)
def test_a_forged_thumbnail_is_refused(forged: object) -> None:
    raw = canonical.dumps({"v": 1, "type": "file", "id": b"\x09" * 16, "sent_at": 5, "text": "", "file": _ref(forged)})
    with pytest.raises(RemoteProtocolError) as info:
        decode_content(raw)
    assert info.value.code == "content_malformed"  # a float is refused by the CBOR decoder itself
    assert "thumbnail" in str(info.value) or "type that is not allowed" in str(info.value)
    with pytest.raises(LocalProtocolError) as local:
        FileRef.from_map(_ref(forged), remote=False)
    assert "thumbnail" in str(local.value)


def test_a_thumbnail_that_passes_the_decoder_but_is_no_such_jpeg_is_found_out(tmp_path: Path) -> None:
    assert thumbnail_problem(Thumbnail(data=JPEG, width=10, height=10)) == "the thumbnail is not a valid JPEG"
    path = tmp_path / "p.png"
    Image.new("RGB", (300, 100)).save(path)
    good = make_thumbnail(path)
    assert good is not None and thumbnail_problem(good) is None
    assert "not 10x10" in (thumbnail_problem(Thumbnail(data=good.data, width=10, height=10)) or "")
    cut = Thumbnail(data=good.data[: len(good.data) // 2], width=good.width, height=good.height)
    assert thumbnail_problem(cut) is not None


async def test_cli_image_with_thumbnail(alpha: RunningNode, register: Register, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    photo = tmp_path / "holiday.jpg"
    _photo_with_gps(photo)
    rc, [sent] = await run_cli(capsys, alice, "send", BOB, "--file", str(photo), "look")
    assert rc == 0 and sent["type"] == "file"
    rc, got = await run_cli(capsys, bob, "recv")
    (msg,) = [m for m in got if m["id"] == sent["id"]]
    assert msg["thumbnail"]["width"] == 171 and msg["thumbnail"]["height"] == 256
    assert 0 < msg["thumbnail"]["bytes"] <= MAX_THUMBNAIL_BYTES and set(msg["thumbnail"]) == {"width", "height", "bytes"}
    rc, history = await run_cli(capsys, bob, "history", ALICE)
    assert [h["thumbnail"] for h in history] == [msg["thumbnail"]]
    rc, lines = await run_cli(capsys, bob, "history", ALICE, json_out=False)
    assert "thumbnail 171x256" in lines[0], lines
    out = tmp_path / "got"
    out.mkdir()
    rc, [saved] = await run_cli(capsys, bob, "download", sent["id"], "--thumbnail", "--out", str(out))
    assert rc == 0 and Path(saved["path"]).name == "holiday.thumbnail.jpg"
    data = Path(saved["path"]).read_bytes()
    assert len(data) == msg["thumbnail"]["bytes"] and b"Exif" not in data and Image.open(io.BytesIO(data)).size == (171, 256)
    assert sorted(p.name for p in out.iterdir()) == ["holiday.thumbnail.jpg"]  # only it: the file was not fetched
    rc, lines = await run_cli(capsys, bob, "download", sent["id"], "--thumbnail", "--out", str(out), json_out=False)
    assert rc == 0 and lines == [str(out / "holiday.thumbnail (1).jpg")]  # never overwrites
    rc, [whole] = await run_cli(capsys, bob, "download", sent["id"], "--out", str(out))
    assert Path(whole["path"]).read_bytes() == photo.read_bytes()  # the file itself is sent as it is
    # a file that is not an image: sent, no thumbnail, and --thumbnail says so in one line
    notes = tmp_path / "notes.jpg"
    notes.write_bytes(os.urandom(5000))
    rc, [plain] = await run_cli(capsys, alice, "send", BOB, "--file", str(notes))
    assert rc == 0
    rc, got = await run_cli(capsys, bob, "recv")
    assert [("thumbnail" in m) for m in got if m["id"] == plain["id"]] == [False]
    rc, [error] = await run_cli(capsys, bob, "download", plain["id"], "--thumbnail", "--out", str(out))
    assert rc != 0 and error["error"]["code"] == "not_a_file" and "no thumbnail" in error["error"]["message"]


async def test_sdk_thumbnail_in_a_group_and_bad_images_still_go(alpha: RunningNode, register: Register, tmp_path: Path) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    await alice.group_create("trip", [BOB, CAROL])
    await bob.receive()
    photo = tmp_path / "beach.png"
    Image.new("RGB", (1000, 500), (10, 200, 10)).save(photo)
    sent = await alice.group_send_file("trip", photo)
    got = next(m for m in (await bob.receive()).group_messages if m.id == sent.id)
    assert group_message_json(got)["thumbnail"]["width"] == 256 and group_message_json(got)["thumbnail"]["height"] == 128
    saved = await bob.save_thumbnail(sent.id, tmp_path)
    assert Image.open(saved).size == (256, 128)
    # a truncated image and a huge one go without a thumbnail
    cut = tmp_path / "cut.jpg"
    _photo_with_gps(tmp_path / "whole.jpg")
    cut.write_bytes((tmp_path / "whole.jpg").read_bytes()[:3000])
    huge = tmp_path / "huge.png"
    Image.new("1", (20_000, 20_000)).save(huge)
    for path in (cut, huge):
        sent = await alice.send_file(BOB, path)
        assert sent.state == "accepted"
        (msg,) = [m for m in (await bob.receive()).messages if m.id == sent.id]
        assert msg.type == "file" and "thumbnail" not in msg.fields["file"]
        with pytest.raises(LocalProtocolError) as info:
            await bob.save_thumbnail(sent.id, tmp_path)
        assert info.value.code == "not_a_file"
