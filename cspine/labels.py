"""The CSXA label vocabulary: shared by ingestion, the phantom generator, the evaluation and the release.

In the core because several stages need it and a stage never imports another's internals. (The released
pipeline, cspine/generation/hub_pipeline.py, carries its own copy: it must run without this package; a test checks
that the copies agree.)

23 LabelMe point labels (as in the CSXA authors' own scripts: "C2 centroid", "C2 bottom left", ...,
"C7 bottom right"; the patient faces left, so "left" corners are anterior) and the five curvature
classes of the metadata sheet.
"""

from __future__ import annotations

#: The 23 keypoint labels, in the set's canonical order.
KEYPOINT_LABELS: tuple[str, ...] = (
    "C2 centroid",
    "C2 bottom left",
    "C2 bottom right",
    *(f"C{v} {side}" for v in range(3, 8) for side in ("top left", "top right", "bottom left", "bottom right")),
)

#: Curvature classes 1-5 (the five sagittal subtypes of the literature).
CURVATURE_CLASSES: dict[int, str] = {1: "lordotic", 2: "straight", 3: "sigmoid", 4: "reverse sigmoid", 5: "kyphotic"}
