"""Detect scores for `swatch serve --metrics`: how `swatch detect` publishes its last score per
target, and how serve reads them.

The simplest honest hand-over between two processes that never run in step: detect writes
``<detect dir>/<target slug>.json`` = ``{"target": "...", "score": 0.42, "time_ns": ...}``
(write to a temporary file in the same directory, fsync, rename over the old one: a reader sees
the old score or the new one, never half of one); serve reads every ``*.json`` there when
Prometheus scrapes (``swatch_detect_score{target=...}`` and
``swatch_detect_score_timestamp_seconds``). Files that are not such a document are skipped
and counted (``swatch_detect_score_unreadable``). The default directory is
``/run/swatch/detect`` (tmpfs: gone at reboot, as the scores are).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from pathlib import Path

DEFAULT_DIR = Path("/run/swatch/detect")


def _slug(target: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", target)[:80]
    return f"{safe}-{hashlib.sha256(target.encode()).hexdigest()[:8]}"


def publish(directory: Path, target: str, score: float, time_ns: int | None = None) -> Path:
    """Replace ``target``'s last score, atomically (rename)."""
    if not math.isfinite(score):
        raise ValueError(f"score {score!r} is not a finite number")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{_slug(target)}.json"
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    doc = {"target": target, "score": float(score),
           "time_ns": time.time_ns() if time_ns is None else int(time_ns)}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(doc).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read_scores(directory: Path) -> tuple[dict[str, tuple[float, int]], int]:
    """({target: (score, time_ns)}, files that could not be read as a score)."""
    scores: dict[str, tuple[float, int]] = {}
    bad = 0
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return scores, 0
    for path in paths:
        try:
            doc = json.loads(path.read_bytes())
            target, score, when = doc["target"], float(doc["score"]), int(doc["time_ns"])
            if not isinstance(target, str) or not math.isfinite(score):
                raise ValueError
        except (OSError, ValueError, KeyError, TypeError):
            bad += 1
            continue
        scores[target] = (score, when)
    return scores, bad
