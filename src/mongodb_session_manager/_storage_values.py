"""How a stored value is encoded: optional zlib compression, and the check that gives back exact bytes."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

ZLIB = "zlib"
COMPRESS_MIN_BYTES = 1024
"""Values shorter than this are never compressed (zlib's header would eat most of the gain)."""
COMPRESSION_LEVEL = 6


class CorruptValueError(Exception):
    """A stored value does not decode to the bytes that were written (wrong length, bad zlib data)."""


@dataclass(frozen=True)
class EncodedValue:
    """The bytes to store for a value, how they are encoded, and the length of the original."""

    stored: bytes
    encoding: str | None
    size: int


def encode_value(data: bytes, *, compress: bool) -> EncodedValue:
    """Compress ``data`` with zlib when asked, long enough, and smaller compressed; else keep it as is."""
    if compress and len(data) >= COMPRESS_MIN_BYTES:
        compressed = zlib.compress(data, COMPRESSION_LEVEL)
        if len(compressed) < len(data):
            return EncodedValue(compressed, ZLIB, len(data))
    return EncodedValue(data, None, len(data))


def decode_value(stored: bytes, encoding: str | None, size: int) -> bytes:
    """The original bytes of a stored value; raises ``CorruptValueError`` unless they are exactly ``size`` long."""
    if encoding == ZLIB:
        try:
            data = zlib.decompress(stored)
        except zlib.error as error:
            raise CorruptValueError(f"zlib data does not decompress: {error}") from error
    elif encoding is None:
        data = stored
    else:
        raise CorruptValueError(f"unknown encoding {encoding!r}")
    if len(data) != size:
        raise CorruptValueError(f"{len(data):,} bytes where {size:,} were written")
    return data
