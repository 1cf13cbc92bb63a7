"""The CSXA layout (Cervical Spine X-ray Atlas, Ran et al., Sci Data 2024) as a list of inputs with labels.

Part of ingestion (``cspine prepare`` with ``data.source: csxa`` or ``phantom``; the phantom generator
writes the same layout). The folder holds

    datasets-PNG/<name>.png     the radiographs
    datasets-JSON/<name>.json   LabelMe annotations: 23 point shapes ("C2 centroid", "C2 bottom left",
                                "C2 bottom right", "C3 top left" ... "C7 bottom right"); "left" is anterior
    *.xlsx / *.csv              a metadata sheet, one row per image: image name, gender/sex, age,
                                curvature class (1-5)

The case (patient) id is the first 4 digits of the file name. Keypoints are read in the image's own
pixel coordinates; the JSON's imageHeight/imageWidth are not trusted (they disagree with the PNG for
some files of the real set) and only counted as warnings once the image is decoded.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from training.ingest.errors import IngestError
from cspine.labels import KEYPOINT_LABELS

PNG_DIR, JSON_DIR = "datasets-PNG", "datasets-JSON"
_CANONICAL = {k.lower(): k for k in KEYPOINT_LABELS}  # labels match ignoring case and extra spaces
log = logging.getLogger("cspine.prepare")
_SHEET_SUFFIXES = (".xlsx", ".xls", ".csv")
_ID_COLUMNS = ("image", "image id", "image_id", "imageid", "image name", "pic_id", "pic id", "file", "filename",
               "file name", "name", "id", "number", "no", "no.")
_SEX_COLUMNS = ("sex", "gender")
_AGE_COLUMNS = ("age", "age (years)", "age(years)")
_CURV_COLUMNS = ("curvature", "curvature class", "cervical curvature", "curvature category", "classification",
                 "curve", "type")


@dataclass
class Item:
    """One input image and what is known about it before decoding."""

    path: Path
    rel: str  # posix path relative to the data folder
    image_id: str
    case_id: str | None  # None: decided after decoding (folder source)
    keypoints: dict[str, tuple[float, float]] | None = None  # source pixel coordinates
    json_size: tuple[int, int] | None = None  # (width, height) the JSON claims
    meta: dict = field(default_factory=dict)  # curvature, sex, age
    warnings: list[dict] = field(default_factory=list)


def case_of(stem: str) -> str:
    """The CSXA case id: the first 4 digits of the file name (the whole stem when it has none)."""
    m = re.match(r"(\d{4})", stem)
    return m.group(1) if m else stem


def read_labelme(path: Path) -> tuple[dict[str, tuple[float, float]], tuple[int, int] | None]:
    """The CSXA keypoints of a LabelMe file (only the 23 known labels) and its claimed (width, height)."""
    ann = json.loads(path.read_text(encoding="utf-8"))
    pts: dict[str, tuple[float, float]] = {}
    for shape in ann.get("shapes", []):
        label = _CANONICAL.get(" ".join(str(shape.get("label", "")).split()).lower())
        points = shape.get("points") or []
        if label is not None and points:
            x, y = points[0][:2]
            pts[label] = (float(x), float(y))
    size = None
    if ann.get("imageWidth") and ann.get("imageHeight"):
        size = (int(ann["imageWidth"]), int(ann["imageHeight"]))
    return {k: pts[k] for k in KEYPOINT_LABELS if k in pts}, size


def _pick(columns: dict[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in columns:
            return columns[n]
    return None


def _sex(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    v = str(value).strip().lower()
    if v in ("m", "male", "man", "1", "男"):
        return "M"
    if v in ("f", "female", "woman", "2", "0", "女"):
        return "F"
    return None


def _number(value) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


class SheetProblem(Exception):
    """The metadata sheet exists but cannot be used; ingestion goes on without it and reports why."""


def read_metadata(root: Path) -> tuple[dict[str, dict], Path | None]:
    """Per-image metadata keyed by image name (stem) from the folder's metadata sheet, and the sheet path.

    Raises :class:`SheetProblem` (naming the sheet) when it cannot be read or has no image column.
    """
    sheets = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in _SHEET_SUFFIXES and not p.name.startswith((".", "~$")))
    if not sheets:
        return {}, None
    sheets.sort(key=lambda p: (0 if "meta" in p.name.lower() else 1, p.name))
    sheet = sheets[0]
    try:
        df = pd.read_csv(sheet, dtype=str) if sheet.suffix.lower() == ".csv" else pd.read_excel(sheet, sheet_name=0, dtype=str)
    except ImportError as err:
        raise SheetProblem(f"cannot read the metadata sheet {sheet}: {err} (install openpyxl, or save it as CSV)") from None
    except Exception as err:
        raise SheetProblem(f"cannot read the metadata sheet {sheet}: {type(err).__name__}: {err}") from None
    cols = {str(c).strip().lower(): c for c in df.columns}
    id_col = _pick(cols, _ID_COLUMNS)
    if id_col is None:
        raise SheetProblem(f"metadata sheet {sheet} has no image column (expected one of: {', '.join(_ID_COLUMNS[:6])})")
    sex_col, age_col, curv_col = _pick(cols, _SEX_COLUMNS), _pick(cols, _AGE_COLUMNS), _pick(cols, _CURV_COLUMNS)
    out: dict[str, dict] = {}
    for _, row in df.iterrows():
        key = str(row[id_col]).strip()
        if not key or key.lower() == "nan":
            continue
        key = Path(key).stem if "." in key else key
        curv = _number(row[curv_col]) if curv_col else None
        age = _number(row[age_col]) if age_col else None
        out[key] = {
            "curvature": int(curv) if curv is not None and 1 <= curv <= 5 else None,
            "sex": _sex(row[sex_col]) if sex_col else None,
            "age": int(age) if age is not None and 0 < age < 130 else None,
        }
    return out, sheet


def list_csxa(root: str | Path) -> tuple[list[Item], dict]:
    """All images of a CSXA-layout folder with their keypoints and metadata; and what the listing noticed."""
    root = Path(root)
    png_dir = root / PNG_DIR
    if not png_dir.is_dir():
        raise IngestError(f"{root} is not in the CSXA layout: {png_dir} is missing (data.path, data.source)")
    json_dir = root / JSON_DIR
    sheet_problem = None
    try:
        meta, sheet = read_metadata(root)
    except SheetProblem as err:
        log.warning("%s; going on without curvature/sex/age", err)
        meta, sheet, sheet_problem = {}, None, str(err)
    files = sorted(p for p in png_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    items: list[Item] = []
    used_ids: set[str] = set()
    for p in files:
        stem = p.stem
        image_id = stem if stem not in used_ids else f"{stem}_{p.suffix.lstrip('.').lower()}"
        used_ids.add(image_id)
        item = Item(path=p, rel=p.relative_to(root).as_posix(), image_id=image_id, case_id=case_of(stem))
        js = json_dir / f"{stem}.json"
        if js.is_file():
            try:
                item.keypoints, item.json_size = read_labelme(js)
                if len(item.keypoints) != len(KEYPOINT_LABELS):
                    missing = [k for k in KEYPOINT_LABELS if k not in item.keypoints]
                    item.warnings.append({"file": item.rel, "warning": "incomplete_keypoints", "detail": f"missing {missing}"})
            except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
                item.warnings.append({"file": item.rel, "warning": "bad_annotation", "detail": f"{js.name}: {err}"})
        else:
            item.warnings.append({"file": item.rel, "warning": "no_annotation", "detail": f"{JSON_DIR}/{stem}.json missing"})
        m = meta.get(stem) or meta.get(item.case_id)
        if m is not None:
            item.meta = dict(m)
        elif meta:
            item.warnings.append({"file": item.rel, "warning": "no_metadata_row", "detail": f"{stem} not in {sheet.name}"})
        items.append(item)
    info = {"metadata_sheet": sheet.name if sheet else None, "annotations": JSON_DIR if json_dir.is_dir() else None}
    if sheet_problem:
        info["metadata_sheet_problem"] = sheet_problem
    return items, info
