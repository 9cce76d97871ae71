"""The compressed variants: brotli with a window no larger than the document needs (capped at
1 MiB), gzip through zlib-ng. Pure: bytes in, bytes out."""

from __future__ import annotations

import gzip
import random

import brotli
import pytest

from feedsvc.publish import snapshot
from feedsvc.publish.snapshot import brotli_window_bits


def _text(size: int, seed: int = 5) -> bytes:
    """Feed-like text: French words, some repeated far apart."""
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz\xc3\xa9", k=rng.randint(2, 9)))
             for _ in range(4000)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=60)) + b".\n<entry>"
    return bytes(out[:size])


@pytest.mark.parametrize(("size", "bits"), [
    (0, 16), (1, 16), (65_536, 16), (65_537, 17), (160_000, 18), (1 << 20, 20),
    ((1 << 20) + 1, 20), (50 << 20, 20)])
def test_window_fits_the_document_up_to_1_mib(size: int, bits: int) -> None:
    assert brotli_window_bits(size) == bits


@pytest.mark.parametrize("size", [0, 1, 4096, 160_000, (1 << 20) + 17, 3 << 20])
def test_variants_decode_to_the_body(size: int) -> None:
    body = _text(size)
    assert brotli.decompress(snapshot._brotli(body)) == body
    assert gzip.decompress(snapshot._gzip(body)) == body


def test_smaller_window_costs_nothing_on_a_feed() -> None:
    """A 160 KB feed: the window it gets compresses it to the size brotli's default (4 MiB
    window) does, give or take the byte that names the window."""
    body = _text(160_000)
    default = brotli.compress(body, quality=snapshot.BROTLI_QUALITY)
    assert abs(len(snapshot._brotli(body)) - len(default)) <= 1
