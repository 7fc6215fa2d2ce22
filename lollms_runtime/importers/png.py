"""Read the text chunks of a PNG with the standard library, checking lengths and CRCs."""

from __future__ import annotations

import struct
import zlib

from .common import ImportFailed

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_FILE_BYTES = 32 << 20
MAX_TEXT_BYTES = 16 << 20


def text_chunks(blob: bytes, shown: str) -> dict[str, bytes]:
    """Keyword -> raw text of every ``tEXt`` chunk (the first one wins for a repeated keyword).

    Raises :class:`ImportFailed` for anything that is not a complete, undamaged PNG.
    """
    if len(blob) > MAX_FILE_BYTES:
        raise ImportFailed(f"{shown}: {len(blob)} bytes is too large for a character card")
    if not blob.startswith(SIGNATURE):
        raise ImportFailed(f"{shown}: not a PNG file (its first bytes are not the PNG signature)")
    found: dict[str, bytes] = {}
    offset = len(SIGNATURE)
    first = True
    while True:
        if offset + 8 > len(blob):
            raise ImportFailed(f"{shown}: damaged PNG: truncated at byte {offset} (no IEND chunk)")
        length, kind = struct.unpack(">I4s", blob[offset : offset + 8])
        if not kind.isalpha():
            raise ImportFailed(f"{shown}: damaged PNG: bad chunk type {kind!r} at byte {offset}")
        name = kind.decode("ascii")
        end = offset + 8 + length + 4
        if length > 0x7FFFFFFF or end > len(blob):
            raise ImportFailed(
                f"{shown}: damaged PNG: chunk {name} at byte {offset} says {length} bytes, "
                "but the file ends first (truncated?)"
            )
        payload = blob[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", blob[end - 4 : end])
        if zlib.crc32(kind + payload) & 0xFFFFFFFF != crc:
            raise ImportFailed(
                f"{shown}: damaged PNG: CRC mismatch in chunk {name} at byte {offset}"
            )
        if first and name != "IHDR":
            raise ImportFailed(f"{shown}: damaged PNG: it does not start with an IHDR chunk")
        first = False
        if name == "tEXt":
            if length > MAX_TEXT_BYTES:
                raise ImportFailed(f"{shown}: a text chunk of {length} bytes is too large")
            keyword, sep, text = payload.partition(b"\x00")
            if sep:
                found.setdefault(keyword.decode("latin-1"), text)
        if name == "IEND":
            return found
        offset = end
