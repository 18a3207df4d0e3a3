"""A file message's ``FileRef`` (core/attachment.py) as the device keeps it among a message's
fields (client/state_history.py ``content_fields``: sealed by the vault like the text, since it
holds the file's key), and back; and what ``recv``/``history`` show of it (never the key, nor
an image's thumbnail bytes: only its size; ``sonet download --thumbnail`` saves them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (imported where a FileRef is rebuilt: the CLI's parser imports this module)
    from sonet.core.attachment import FileRef

__all__ = ["file_fields", "file_ref_of", "file_json", "file_summary"]

_HEX = ("blob", "key", "sha256", "sealed_sha256")


def file_fields(ref: FileRef) -> dict[str, Any]:
    kept = {name: value.hex() if name in _HEX else value for name, value in ref.to_map().items()}
    if "thumbnail" in kept:
        kept["thumbnail"] = {**kept["thumbnail"], "data": kept["thumbnail"]["data"].hex()}
    return kept


def file_ref_of(fields: dict[str, Any]) -> FileRef:
    """The FileRef kept in ``fields["file"]`` (checked again: the store is not trusted blindly)."""
    from sonet.core.attachment import FileRef

    kept: dict[str, Any] = {name: bytes.fromhex(value) if name in _HEX else value for name, value in fields["file"].items()}
    thumbnail = kept.get("thumbnail")
    if isinstance(thumbnail, dict):
        kept["thumbnail"] = {**thumbnail, "data": bytes.fromhex(thumbnail["data"])}
    return FileRef.from_map(kept, remote=False)


def file_json(fields: dict[str, Any]) -> dict[str, Any]:
    """What ``--json`` prints of a file message: name, size, sha256 (of the file), media_type, and
    a voice note's ``voice_ms`` (its length), an image's ``thumbnail: {width, height, bytes}``
    (its size, not its bytes)."""
    kept = fields.get("file")
    if not isinstance(kept, dict):
        return {}
    shown = {"name": kept["name"], "size": kept["size"], "sha256": kept["sha256"], "media_type": kept["media_type"]}
    if "voice_ms" in kept:
        shown["voice_ms"] = kept["voice_ms"]
    thumbnail = kept.get("thumbnail")
    if isinstance(thumbnail, dict):
        shown["thumbnail"] = {"width": thumbnail["width"], "height": thumbnail["height"], "bytes": len(thumbnail["data"]) // 2}
    return shown


def file_summary(fields: dict[str, Any]) -> str:
    """One line's worth: the name and size (and the caption, if any)."""
    kept = fields.get("file")
    if not isinstance(kept, dict):
        return "a file"
    caption = f": {fields['text']}" if fields.get("text") else ""
    if "voice_ms" in kept:
        return f"voice note {kept['name']!r} ({_duration(kept['voice_ms'])}, {_size(kept['size'])}){caption}"
    thumbnail = kept.get("thumbnail")
    seen = f", thumbnail {thumbnail['width']}x{thumbnail['height']}" if isinstance(thumbnail, dict) else ""
    return f"file {kept['name']!r} ({_size(kept['size'])}{seen}){caption}"


def _duration(ms: int) -> str:
    """m:ss (h:mm:ss past an hour), rounded up to the second: a 0.4 s note reads 0:01."""
    s = -(-ms // 1000)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
