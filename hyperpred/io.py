"""Files written so that a reader never sees half of one: a temporary name, fsync, then rename.

Zoo shards, manifests, run folders (run.json, metrics.json), reports and predicted targets all go
through these, so a crash or a concurrent reader leaves either the old file or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: mkstemp creates files readable by their owner only; zoo files get the usual umask instead,
#: so that a zoo built by one user (or job) of a group can be read by the others.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_stream(path: Path, parts: Iterable[bytes | memoryview]) -> tuple[str, int]:
    """Write ``parts`` to ``path`` atomically; return the sha256 and the size of what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            for part in parts:
                f.write(part)
                digest.update(part)
                size += len(part) if isinstance(part, bytes) else part.nbytes
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return digest.hexdigest(), size


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_stream(path, [data])


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
