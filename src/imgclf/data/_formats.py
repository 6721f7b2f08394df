"""Recognising image files by their first bytes (magic numbers), not by their names or HTTP headers."""

from __future__ import annotations

# first bytes -> file extension; WebP and AVIF/HEIC need a second look, done in ``sniff``
_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"),
          (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))
SNIFF_BYTES = 16  # bytes ``sniff`` needs


def sniff(head: bytes) -> str | None:
    """The extension (".jpg", ".png", ...) of an image whose file starts with ``head``; None when it is not one.

    Examples:
        >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n....")
        '.png'
        >>> sniff(b"<!DOCTYPE html>") is None
        True
    """
    for magic, ext in _MAGIC:
        if head.startswith(magic):
            return ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return None
