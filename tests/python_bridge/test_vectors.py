"""The shared wire vectors (tests/data/protocol_vectors.json) match our encoder and decoder byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from python_bridge import protocol as P

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "protocol_vectors.json").read_text())["messages"]


def test_every_message_type_has_a_vector():
    assert {v["type"] for v in VECTORS} == set(P.REQUEST_TYPES) | set(P.REPLY_TYPES)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_roundtrip(vector):
    blobs = [np.asarray(b["values"], dtype=b["dtype"]).reshape(b["shape"]) for b in vector["blobs"]]
    frames = P.encode(P.Message(vector["type"], vector["id"], vector["fields"], blobs))
    assert [bytes(f).hex() for f in frames] == vector["frames_hex"]
    decoded = P.decode([bytes.fromhex(h) for h in vector["frames_hex"]])
    assert (decoded.type, decoded.id, decoded.fields) == (vector["type"], vector["id"], vector["fields"])
    for got, want in zip(decoded.blobs, blobs, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype


def test_request_vectors_pass_validation():
    by_name = {v["name"]: v for v in VECTORS}
    decode = lambda name: P.decode([bytes.fromhex(h) for h in by_name[name]["frames_hex"]])  # noqa: E731
    assert len(P.parse_views(decode("open_scene"), P.Limits())) == 1
    assert len(P.parse_views(decode("add_views"), P.Limits())) == 1
    req = P.parse_render(decode("render"), P.Limits())
    assert req.size == (2, 2) and req.seed == 42 and req.c2w[0, 3] == 0.5


def test_the_docs_byte_example_counts_the_frame_header_right():
    """docs/protocol.md walks through the frame example's bytes; its entry count once was wrong."""
    import re

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    count, marker = re.search(r"the header map \((\d+) entries, `([0-9a-f]{2})`", doc).groups()
    (frame,) = [v for v in VECTORS if v["name"] == "frame"]
    header = bytes.fromhex(frame["frames_hex"][0])
    assert header[0] == 0x80 | int(count) and marker == f"{header[0]:02x}"
    assert frame["frames_hex"][0].endswith(re.search(r"ending with\n`([0-9a-f ]+)`", doc).group(1).replace(" ", ""))
