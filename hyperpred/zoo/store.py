"""Files of a zoo: safetensors shards, their checksums, and the manifest. Writes are atomic.

A reader never sees a half-written file: everything is written to a temporary name in the same
folder, flushed, and renamed into place. Shards are safetensors (plain tensors, no pickle), so a
zoo from someone else can never run code when it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from hyperpred.errors import ZooFileError

MANIFEST = "manifest.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def record_name(index: int) -> str:
    return f"shard-{index:05d}.json"


def remove_stale_temps(folder: Path, name: str) -> int:
    """Delete temporary files that a killed writer of ``name`` left behind; returns how many.

    Call it only while holding the lock that guards ``name``: then no live writer owns them.
    """
    count = 0
    for tmp in folder.glob(f".{name}.*.tmp"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


def write_shard(folder: Path, index: int, tensors: dict[str, torch.Tensor], record: dict[str, Any]) -> dict[str, Any]:
    """Write a shard, then its record (checksum, counts). The record's presence marks completion."""
    data = st_save({k: v.contiguous() for k, v in tensors.items()})
    record = {**record, "file": shard_name(index), "sha256": sha256_bytes(data), "bytes": len(data)}
    atomic_write_bytes(folder / shard_name(index), data)
    atomic_write_json(folder / record_name(index), record)
    return record


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
        data = path.read_bytes()
    except FileNotFoundError:
        raise ZooFileError(f"{path}: shard file not found") from None
    if len(data) != record["bytes"] or sha256_bytes(data) != record["sha256"]:
        raise ZooFileError(f"{path}: checksum mismatch (truncated or altered shard)")
    try:
        return st_load(data)
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
        if path.stat().st_size != record.get("bytes"):
            return None
        data = path.read_bytes()
    except (ZooFileError, OSError, KeyError, AttributeError):
        return None
    if sha256_bytes(data) != record.get("sha256"):
        return None
    return record
