"""Tensor artifacts are checked when read (issue 26, item 6).

Independent facts: where a tensor's bytes lie in a safetensors file is read here from the
file's own header (8-byte little-endian length, JSON with ``data_offsets``), so the flipped
byte is one of the tensor's data, not of the header; a file written by plain safetensors with
only a record (what gibench wrote before digests) reads back unchecked.
"""
from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save as st_save

from gibench import io


def _data_range(blob: bytes, name: str) -> tuple[int, int]:
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    a, b = header[name]["data_offsets"]
    return 8 + n + a, 8 + n + b


def _gradient(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"conv.weight": torch.randn(12, 3, 5, 5, generator=g), "fc.bias": torch.randn(100, generator=g)}
    path = tmp_path / "s000.safetensors"
    io.save_tensors(path, tensors, {"rule": "gradient", "seed": 1})
    return path, tensors


def test_a_flipped_byte_in_tensor_data_is_refused_naming_the_file(tmp_path):
    # before: read back silently, and the attack reconstructed from the altered gradient
    path, tensors = _gradient(tmp_path)
    blob = bytearray(path.read_bytes())
    lo, hi = _data_range(bytes(blob), "fc.bias")
    blob[(lo + hi) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(io.ArtifactError) as e:
        io.load_tensors(path)
    assert str(e.value).startswith(f"{path}: its tensor data has sha256") and "altered or damaged" in str(e.value)


def test_intact_file_round_trips_and_rewriting_gives_the_same_bytes(tmp_path):
    path, tensors = _gradient(tmp_path)
    first = path.read_bytes()
    back, rec = io.load_tensors(path)
    assert rec == {"rule": "gradient", "seed": 1}                 # the digest is not part of the record
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    io.save_tensors(path, back, rec)
    assert path.read_bytes() == first                              # re-running a job: the same bytes
    assert io.recorded_digest(path) == io.tensor_digest(tensors)


def test_digest_covers_dtype_shape_and_name_not_only_bytes():
    x = torch.arange(6, dtype=torch.int32)
    base = io.tensor_digest({"a": x})
    assert io.tensor_digest({"a": x.reshape(2, 3)}) != base
    assert io.tensor_digest({"a": x.view(torch.float32)}) != base
    assert io.tensor_digest({"b": x}) != base
    assert io.tensor_digest({"a": x.clone()}) == base
    # every dtype the pipeline writes hashes (bool masks, bf16, 0-d, empty)
    io.tensor_digest({"m": torch.ones(3, dtype=torch.bool), "h": torch.ones(2, dtype=torch.bfloat16),
                      "s": torch.tensor(1.5), "e": torch.zeros(0)})


def test_a_file_without_a_digest_is_read_unchecked(tmp_path):
    # artifacts written before digests were recorded: readable as before (re-running makes new ones)
    path = tmp_path / "old.safetensors"
    path.write_bytes(st_save({"x": torch.ones(3)}, metadata={io.META_KEY: json.dumps({"rule": "old"})}))
    x, rec = io.load_tensors(path)
    assert rec == {"rule": "old"} and torch.equal(x["x"], torch.ones(3))
    assert io.recorded_digest(path) is None
