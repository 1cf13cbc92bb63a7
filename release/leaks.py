"""Keeping private metadata out of released files.

The private strings of a run are what identifies its *source* images: their file paths (and file names),
the training image ids and case ids from ``data/index.parquet``, and the input folder. Packaging redacts them
from the stage summaries it includes in the cards and then scans every released file for them; tests scan too.
Short purely numeric ids (under 6 digits) are not searched for as free text, since they would match any number;
longer numeric ids (CSXA's file names are numbers) must stand alone as a token to count, so ``113201`` is
found in ``113201.png`` or ``id 113201`` but not inside ``0.1132014``. Numeric Parquet columns (scores, seeds,
steps) are not scanned: a number carries no name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cspine.rundir import RunDir


def _useful(s: str) -> bool:
    s = s.strip()
    return len(s) >= 4 and not (s.isdigit() and len(s) < 6)


def private_needles(run: RunDir, extra: list[str] | tuple[str, ...] = ()) -> set[str]:
    """Strings that must not appear in any released file."""
    out = {str(x) for x in extra if _useful(str(x))}
    if run.index.is_file():
        idx = pd.read_parquet(run.index, columns=["image_id", "source", "case_id"])
        for src in idx["source"].astype(str):
            p = Path(src)
            out.update(x for x in (src, p.name, p.stem, str(p.parent)) if _useful(x) and x != ".")
        out.update(x for x in idx["image_id"].astype(str) if _useful(x))
        out.update(x for x in idx["case_id"].astype(str) if _useful(x))
    return out


#: A standalone number: not part of a longer number, a word or a decimal fraction.
_NUMBER = re.compile(r"(?<![\w.])\d+(?!\w)")


def _found(blob: str, needles: set[str]) -> set[str]:
    """The needles present in ``blob``: digit-only ids as whole numbers, other needles as substrings.

    Numbers are pulled out of the text once and intersected with the ids (linear in the text, however many
    ids there are); the other needles are plain substring checks.
    """
    digits = {n for n in needles if n.isdigit()}
    hits = digits & set(_NUMBER.findall(blob)) if digits else set()
    return hits | {n for n in needles - digits if n in blob}


def redact(text: str, needles: set[str]) -> str:
    for n in sorted(_found(text, needles), key=len, reverse=True):
        pattern = rf"(?<![\w.]){n}(?!\w)" if n.isdigit() else re.escape(n)
        text = re.sub(pattern, "[redacted]", text)
    return text


def _safetensors_header(path: Path) -> str:
    """The JSON header of a safetensors file (its only text: names, shapes, metadata); the rest is numbers."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        return fh.read(min(size, 100_000_000)).decode("utf-8", "replace")


def _texts_of(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        pf = pq.ParquetFile(path)
        texts = [v.decode("utf-8", "replace") for v in (pf.schema_arrow.metadata or {}).values()]
        names = [f.name for f in pf.schema_arrow
                 if f.name != "image" and not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                                               or pa.types.is_boolean(f.type))]
        t = pf.read(columns=names)
        texts += [str(v) for col in t.columns for v in col.to_pylist()]
        img = pf.read(columns=["image"]) if "image" in pf.schema_arrow.names else None
        if img is not None:
            texts += [str(v["path"]) for v in img.column("image").to_pylist() if v and v.get("path")]
        return texts
    if path.suffix == ".safetensors":
        return [_safetensors_header(path)]
    return [path.read_bytes().decode("utf-8", "replace")]


def find_leaks(folder: Path, needles: set[str]) -> list[str]:
    """``file: needle`` for every private string found in a file under ``folder``."""
    hits = []
    for p in sorted(Path(folder).rglob("*")):
        if not p.is_file() or p.suffix == ".png":
            continue
        blob = "\n".join(_texts_of(p))
        hits += [f"{p}: {n!r}" for n in sorted(_found(blob, needles))]
    return hits
