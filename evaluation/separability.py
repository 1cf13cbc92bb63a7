"""The classifier two-sample test as a quality metric of `cspine evaluate`: can a small CNN tell samples from
held-out real images?

Part of the evaluation stage (evaluation.evaluate calls :func:`c2st_metric`); the test itself is shared
with the reader study's blinding check (cspine.twosample.c2st). The synthetic images are scored by
networks that never trained on them (k-fold cross-validation): the AUC, with a DeLong 95% interval, goes
into metrics.json and summary.md (0.5: the classifier finds no difference; 1: the sets are separable), and
the synthetic images it is most sure about go into figures/c2st_most_synthetic.png (synthetic pixels only,
so the release may show it): what the model still gets visibly wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cspine.twosample import c2st
from evaluation.data import ImageSet


def c2st_metric(real: ImageSet, synth: ImageSet, cfg, figure: Path | None = None) -> dict:
    """The ``c2st`` entry of metrics.json for ``real`` (holdout, else train) against ``synth``; ``cfg`` is
    ``evaluate.c2st``. Draws the figure of the most confidently synthetic images when ``figure`` is given."""
    from evaluation.report import plot_most_synthetic

    if not cfg.enabled:
        return {"skipped": "disabled (evaluate.c2st.enabled: false)"}
    if min(len(real), len(synth)) < cfg.folds:
        return {"skipped": f"fewer than {cfg.folds} images in the {real.name} or the synthetic set"}
    rng = np.random.default_rng(cfg.seed)
    ra = np.sort(rng.permutation(len(real))[: cfg.max_images])
    sa = np.sort(rng.permutation(len(synth))[: cfg.max_images])
    res = c2st(real.pixels[ra], synth.pixels[sa], size=cfg.size, folds=cfg.folds, epochs=cfg.epochs, seed=cfg.seed)
    order = np.argsort(-res.scores_b, kind="stable")
    out = {**res.to_json(), "a": real.name, "b": "synthetic",
           "most_synthetic": [{"image_id": synth.ids[sa[i]], "p_synthetic": round(float(res.scores_b[i]), 4)}
                              for i in order[:16]]}
    if figure is not None:
        plot_most_synthetic(synth.unit()[sa[order[:16]]], res.scores_b[order[:16]], figure)
        out["figure"] = f"figures/{figure.name}"
    return out
