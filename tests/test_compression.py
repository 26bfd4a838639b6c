"""Sizes of the deployment variants: the gzip size of a model file (no TensorFlow)."""

import gzip
import zlib

import pytest

from core.deploy import compression

pytestmark = pytest.mark.unit


def test_gzip_size_matches_gzip_of_a_known_byte_string():
    data = b"deployment " * 1000 + bytes(range(256))
    expected = gzip.compress(data, compresslevel=9, mtime=0)
    assert compression.gzip_size(data) == len(expected)
    # A gzip member is a 10-byte header, the raw deflate stream and an 8-byte trailer.
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    assert compression.gzip_size(data) == 10 + len(deflate.compress(data) + deflate.flush()) + 8
    assert gzip.decompress(expected) == data
    assert compression.gzip_size(b"") == 20  # empty deflate stream: 2 bytes
