"""Files of a zoo: safetensors shards, their checksums, and the manifest. Writes are atomic.

A reader never sees a half-written file: everything is written to a temporary name in the same
folder, flushed, fsynced, and renamed into place. Shards are safetensors (plain tensors, no
pickle), so a zoo from someone else can never run code when it is loaded.

Shards are written by a small streaming safetensors writer: the header, then each tensor's
memory as is, hashed on the way. Going through ``safetensors.torch.save`` would first copy the
whole shard into one bytes object (twice the memory, and page faults on every build).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as st_load_file

from hyperpred.errors import ZooFileError
from hyperpred.io import atomic_write_json, atomic_write_stream

MANIFEST = "manifest.json"
_READ_BLOCK = 16 * 2**20
#: torch dtype → safetensors dtype tag.
SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in blocks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def record_name(index: int) -> str:
    return f"shard-{index:05d}.json"


def safetensors_parts(tensors: dict[str, torch.Tensor]) -> list[bytes | memoryview]:
    """The bytes of a safetensors file as a list of parts: header, then every tensor's memory.

    Tensors are laid out in sorted name order; the header is padded with spaces to 8 bytes, as
    the format asks. The result is a pure function of the tensors' names, dtypes, shapes, values.
    """
    if sys.byteorder != "little":  # pragma: no cover - safetensors stores little-endian data
        raise RuntimeError("zoo shards are written on little-endian machines only")
    header: dict[str, Any] = {}
    views: list[memoryview] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in SAFETENSORS_DTYPES:
            raise TypeError(f"tensor '{name}' has dtype {t.dtype}, which zoo shards do not store")
        view = memoryview(t.reshape(-1).view(torch.uint8).numpy())
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + view.nbytes],
        }
        views.append(view)
        offset += view.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-(8 + len(blob)) % 8)
    return [len(blob).to_bytes(8, "little"), blob, *views]


def write_shard(folder: Path, index: int, tensors: dict[str, torch.Tensor], record: dict[str, Any]) -> dict[str, Any]:
    """Write a shard, then its record (checksum, size). The record's presence marks completion."""
    sha, size = atomic_write_stream(folder / shard_name(index), safetensors_parts(tensors))
    record = {**record, "file": shard_name(index), "sha256": sha, "bytes": size}
    atomic_write_json(folder / record_name(index), record)
    return record


def remove_stale_temps(folder: Path, name: str) -> int:
    """Delete temporary files that a killed writer of ``name`` left behind; returns how many.

    Call it only while holding the lock that guards ``name``: then no live writer owns them.
    """
    count = 0
    for tmp in folder.glob(f".{name}.*.tmp"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ZooFileError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooFileError(f"{path}: not valid JSON ({e})") from None


def read_shard(folder: Path, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Load a shard after checking its size and sha256 against its record."""
    path = folder / record["file"]
    try:
        size = path.stat().st_size
        sha = sha256_file(path) if size == record["bytes"] else None
    except FileNotFoundError:
        raise ZooFileError(f"{path}: shard file not found") from None
    if sha != record["sha256"]:
        raise ZooFileError(f"{path}: checksum mismatch (truncated or altered shard)")
    try:
        return st_load_file(path)
    except SafetensorError as e:  # pragma: no cover - checksum catches this first
        raise ZooFileError(f"{path}: not a valid safetensors file ({e})") from None


def shard_is_valid(folder: Path, index: int, expect: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The shard's record when the shard is complete and intact, else None.

    ``expect`` holds fields the record must carry (the zoo's key, the shard's bounds), so that a
    record can never vouch for a shard of another zoo or another layout.
    """
    rec_path = folder / record_name(index)
    if not rec_path.exists():
        return None
    try:
        record = read_json(rec_path)
        if record.get("file") != shard_name(index) or any(record.get(k) != v for k, v in (expect or {}).items()):
            return None
        path = folder / record["file"]
        if path.stat().st_size != record.get("bytes") or sha256_file(path) != record.get("sha256"):
            return None
    except (ZooFileError, OSError, KeyError, AttributeError):
        return None
    return record
