"""bench/results.json: the figures of the last run of each benchmark on this machine, one key per benchmark.

A benchmark calls :func:`record` with its name and a JSON-able dict; the file is read, that key
replaced (the others kept) and written atomically, with when and where it was measured. The file
describes one machine, so it is not committed (.gitignore).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def machine() -> dict:
    import torch

    out = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def record(name: str, figures: dict, path: Path = RESULTS) -> Path:
    """Merge ``{name: figures}`` (plus time and machine) into ``path``; returns the path."""
    from cspine import atomic

    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        data = {}  # a corrupt file from an interrupted older writer: start over
    if not isinstance(data, dict):
        data = {}
    data[name] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **figures}
    atomic.write_json(path, data)
    return path
