"""Writing the phantom data set as a CSXA-shaped folder (what ``cspine demo-data`` does).

Last step of the phantom generator: for each image, draw the case (``anatomy.sample_case``), this
image's pose and exposure, render it (``render.render``) and write

    <out>/datasets-PNG/<name>.png      16-bit grayscale radiograph
    <out>/datasets-JSON/<name>.json    LabelMe JSON with the 23 CSXA keypoints
    <out>/CSXA-metadata.xlsx           one row per image: Image, Gender, Age, Curvature (1-5), ...
    <out>/phantom.json                 manifest: generator version + config fingerprint + files (written last)
    <out>/.phantom-started             the fingerprint of a run in progress (removed when it finishes)

``<name>`` is the 4-digit case id followed by a 2-digit image number (``100102`` is case 1001's second
image), so the CSXA loader finds the case as the first 4 digits of the file name. As in the real set,
some JSON files carry an ``imageHeight``/``imageWidth`` that disagrees with the PNG. Image i depends only
on (seed, i); a folder whose manifest matches the config is left as it is, and an interrupted run
resumes by writing only the missing files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cspine import atomic
from cspine.images import from_unit, write_png
from cspine.parallel import map_with_progress
from training.phantom.acquisition import sample_acquisition
from training.phantom.anatomy import CURVATURE_CLASSES, KEYPOINT_LABELS, keypoints, layout, sample_case, sample_pose
from training.phantom.render import render

log = logging.getLogger("cspine.phantom")

#: Bump whenever the rendering changes: it is part of the fingerprint, so old folders are remade.
GENERATOR_VERSION = "phantom-6"
MANIFEST = "phantom.json"
STARTED = ".phantom-started"
METADATA_XLSX = "CSXA-metadata.xlsx"
METADATA_CSV = "CSXA-metadata.csv"
PNG_DIR, JSON_DIR = "datasets-PNG", "datasets-JSON"
#: Share of LabelMe files whose imageHeight/imageWidth disagree with the PNG (as in the real set).
JSON_SIZE_MISMATCH = 0.08


@dataclass(frozen=True)
class ImagePlan:
    index: int
    case_index: int
    image_number: int  # 1-based within the case

    @property
    def case_id(self) -> str:
        return f"{1001 + self.case_index:04d}"

    @property
    def name(self) -> str:
        return f"{self.case_id}{self.image_number:02d}"


def plan_images(count: int, cases: int, seed: int) -> list[ImagePlan]:
    """Assign ``count`` images to cases: one per case first, the rest to seeded random cases."""
    n_cases = min(cases, count)
    if n_cases > 8999:
        raise ValueError(f"data.phantom.cases={cases}: at most 8999 cases fit 4-digit case ids")
    owners = list(range(n_cases))
    rng = np.random.default_rng([seed, 7])
    extra = count - n_cases
    while extra > 0:
        take = rng.permutation(n_cases)[: min(extra, n_cases)]
        owners.extend(sorted(int(t) for t in take))
        extra -= len(take)
    seen: dict[int, int] = {}
    plans = []
    for i, c in enumerate(owners):
        seen[c] = seen.get(c, 0) + 1
        plans.append(ImagePlan(index=i, case_index=c, image_number=seen[c]))
    return plans


def fingerprint(phantom_cfg) -> str:
    """What decides the files: generator version and the phantom config."""
    blob = json.dumps({"version": GENERATOR_VERSION, "cfg": phantom_cfg.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def labelme_json(name: str, points: dict[str, tuple[float, float]], height: int, width: int) -> dict:
    """A LabelMe 5 annotation with one point shape per keypoint."""
    return {
        "version": "5.2.1",
        "flags": {},
        "shapes": [
            {"label": k, "points": [[round(x, 2), round(y, 2)]], "group_id": None, "description": "",
             "shape_type": "point", "flags": {}, "mask": None}
            for k, (x, y) in points.items()
        ],
        "imagePath": f"..\\{PNG_DIR}\\{name}.png",
        "imageData": None,
        "imageHeight": int(height),
        "imageWidth": int(width),
    }


def make_image(seed: int, plan: ImagePlan, height: int, width: int):
    """Render one phantom: (uint16 image, keypoints, LabelMe JSON dict, metadata row). Pure in (seed, plan)."""
    case = sample_case(seed, plan.case_index)  # case-level: anatomy, degeneration, hardware
    rng = np.random.default_rng([seed, plan.case_index, 1 + plan.image_number])  # this image's own draws
    pose = sample_pose(rng)
    verts = layout(case, height, width, pose)
    pts = keypoints(verts)
    acq = sample_acquisition(rng, np.array(list(pts.values())), verts[0].b, verts[-1].a, height, width)
    img = from_unit(render(case, verts, pose, acq, height, width, rng), 16)
    jh, jw = height, width
    if rng.random() < JSON_SIZE_MISMATCH:  # the annotation tool saw another size
        f = rng.choice([0.5, 2.0, 2.5])
        jh, jw = (int(round(height * f)), int(round(width * f))) if rng.random() < 0.7 else (width, height)
    return img, pts, labelme_json(plan.name, pts, jh, jw), metadata_row(case, plan)


def metadata_row(case, plan: ImagePlan) -> dict:
    """The metadata sheet's row of one image (depends on the case only)."""
    return {
        "Image": plan.name,
        "Gender": "Male" if case.sex == "M" else "Female",
        "Age": case.age,
        "Curvature": case.curvature,
        "Curvature type": CURVATURE_CLASSES[case.curvature],
        "Pixel equivalent (mm/pixel)": round(0.4 / case.size, 4),
    }


def _write_one(args) -> dict:
    out, seed, plan, height, width = args
    png = Path(out) / PNG_DIR / f"{plan.name}.png"
    js = Path(out) / JSON_DIR / f"{plan.name}.json"
    if png.exists() and js.exists():  # resumed run: already written
        return metadata_row(sample_case(seed, plan.case_index), plan)
    img, _, ann, row = make_image(seed, plan, height, width)
    if not png.exists():
        write_png(png, img)
    if not js.exists():
        atomic.write_json(js, ann)
    return row


def _write_metadata(out: Path, rows: list[dict]) -> Path:
    df = pd.DataFrame(rows).sort_values("Image").reset_index(drop=True)
    df["Age"] = df["Age"].astype("Int64")
    try:
        import openpyxl  # noqa: F401  (pandas' xlsx writer)
    except ImportError:  # still a readable sheet, and the loader takes CSV too
        path = out / METADATA_CSV
        with atomic.atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
        return path
    path = out / METADATA_XLSX
    with atomic.atomic_path(path) as tmp:
        df.to_excel(tmp, index=False, sheet_name="metadata")
    return path


def _recorded_fingerprint(manifest: Path) -> str | None:
    try:
        return json.loads(manifest.read_text()).get("fingerprint")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def is_complete(out: Path, phantom_cfg) -> bool:
    """True when ``out`` holds a finished phantom set made with this config."""
    man = Path(out) / MANIFEST
    if _recorded_fingerprint(man) != fingerprint(phantom_cfg):
        return False
    meta = json.loads(man.read_text())
    return all((Path(out) / f).is_file() for f in meta.get("files", []))


def write_phantom_folder(out: str | os.PathLike[str], phantom_cfg, workers: int | None = None, progress: bool = True) -> dict:
    """Write (or finish) the phantom folder for ``phantom_cfg`` (a PhantomConfig); return its manifest."""
    out = Path(out)
    if is_complete(out, phantom_cfg):
        log.info("phantom data in %s is complete for this config; nothing to do", out)
        return json.loads((out / MANIFEST).read_text()) | {"skipped": True}
    man = out / MANIFEST
    started = out / STARTED
    fp = fingerprint(phantom_cfg)
    if _recorded_fingerprint(man) not in (None, fp) or (started.exists() and started.read_text().strip() != fp):
        # made (or begun) with another config: its files are not this data set's; start afresh
        man.unlink(missing_ok=True)
        for sub in (PNG_DIR, JSON_DIR):
            for p in (out / sub).glob("*"):
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(started, fp + "\n")  # lets an interrupted run resume only with the same config
    (out / PNG_DIR).mkdir(parents=True, exist_ok=True)
    (out / JSON_DIR).mkdir(parents=True, exist_ok=True)
    atomic.clean_temporaries(out)

    c = phantom_cfg
    plans = plan_images(c.count, c.cases, c.seed)
    jobs = [(str(out), c.seed, p, c.height, c.width) for p in plans]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    rows = map_with_progress(_write_one, jobs, workers, "demo-data", progress)
    sheet = _write_metadata(out, rows)
    files = [f"{PNG_DIR}/{p.name}.png" for p in plans] + [f"{JSON_DIR}/{p.name}.json" for p in plans] + [sheet.name]
    manifest = {
        "generator": GENERATOR_VERSION,
        "fingerprint": fp,
        "config": phantom_cfg.model_dump(mode="json"),
        "images": len(plans),
        "cases": len({p.case_index for p in plans}),
        "keypoint_labels": list(KEYPOINT_LABELS),
        "curvature_classes": {str(k): v for k, v in CURVATURE_CLASSES.items()},
        "files": files,
    }
    atomic.write_json(man, manifest)  # written last: its presence means the folder is complete
    started.unlink(missing_ok=True)
    return manifest
