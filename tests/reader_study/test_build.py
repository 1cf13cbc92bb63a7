"""`cspine study build`: the design (one real per trial, no reuse, groups balanced, seeded) and the blinding
(served files identical in everything but pixels; the answer key apart from what is served)."""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats as sps

from reader_study import store
from reader_study.assets import chunk_layout, encode_png, png_chunks
from reader_study.build import StudyError, StudyPaths, build_study
from reader_study.design import DesignError, make_stratified_trials, make_trials, rater_order
from tests.reader_study.conftest import GROUPS, study_config


def test_design_one_real_per_trial_no_reuse_balanced_and_seeded():
    real = [f"r{i}" for i in range(20)]
    synth = {g: [f"{g}-{i}" for i in range(20)] for g in GROUPS}
    trials, warnings = make_trials(real, synth, 15, 4, seed=7)
    assert not warnings and len(trials) == 15
    used = [a.image_id for t in trials for a in t.alternatives]
    assert len(used) == len(set(used)) == 60
    for t in trials:
        assert sum(a.kind == "real" for a in t.alternatives) == 1
        assert sorted(a.group for a in t.alternatives if a.kind != "real") == sorted(GROUPS)  # paper's design
    assert Counter(t.real_position for t in trials).keys() <= {0, 1, 2, 3}
    assert len(set(t.real_position for t in trials)) > 1  # positions are shuffled
    again, _ = make_trials(real, synth, 15, 4, seed=7)
    assert again == trials
    other, _ = make_trials(real, synth, 15, 4, seed=8)
    assert other != trials
    # pairs with three groups: groups used equally often
    pairs, _ = make_trials(real, synth, 12, 2, seed=0)
    assert Counter(a.group for t in pairs for a in t.alternatives if a.kind != "real") == {g: 4 for g in GROUPS}


def test_design_shortfall_is_a_clear_error_or_fewer_trials_when_allowed():
    real = [f"r{i}" for i in range(5)]
    synth = {"final": [f"s{i}" for i in range(30)]}
    with pytest.raises(DesignError, match="10 trials of 4 need 10 held-out real images.*5 real.*enough for 5"):
        make_trials(real, synth, 10, 4, seed=0)
    trials, warnings = make_trials(real, synth, 10, 4, seed=0, allow_fewer=True)
    assert len(trials) == 5 and "building 5" in warnings[0]


def test_stratified_design_keeps_each_trial_in_one_class_in_proportion():
    real = [f"r{i}" for i in range(30)]
    synth = {"final": [f"s{i}" for i in range(90)]}
    strata = {**{f"r{i}": "AB"[i % 3 == 0] for i in range(30)},  # 10 of class B, 20 of class A
              **{f"s{i}": "AB"[i % 3 == 0] for i in range(90)}}
    trials, warnings = make_stratified_trials(real, synth, strata, 12, 4, seed=3)
    assert not warnings and len(trials) == 12 and [t.index for t in trials] == list(range(12))
    for t in trials:
        assert {strata[a.image_id] for a in t.alternatives} == {t.stratum}  # like with like
        assert sum(a.kind == "real" for a in t.alternatives) == 1
    assert Counter(t.stratum for t in trials) == {"A": 8, "B": 4}  # 2 : 1, as the held-out real images
    used = [a.image_id for t in trials for a in t.alternatives]
    assert len(used) == len(set(used))
    assert make_stratified_trials(real, synth, strata, 12, 4, seed=3)[0] == trials
    # a class with too few synthetic images caps its trials; the rest is a clear error or fewer trials
    few = {**strata, **{f"s{i}": "A" for i in range(90)}}  # no synthetic image of class B
    synth36 = {"final": synth["final"][:36]}  # 36 of class A: 12 quartets
    with pytest.raises(DesignError, match="classes allow 12"):
        make_stratified_trials(real, synth36, few, 13, 4, seed=0)
    fewer, warnings = make_stratified_trials(real, synth36, few, 13, 4, seed=0, allow_fewer=True)
    assert {t.stratum for t in fewer} == {"A"} and "building 12" in warnings[-1]


def test_build_stratifies_a_conditional_study_by_class(study_run):
    s = pd.read_parquet(study_run.samples_table)
    s["curvature"] = pd.array([i % 2 + 1 for i in range(len(s))], dtype="Int64")
    s.to_parquet(study_run.samples_table, index=False)
    index = pd.read_parquet(study_run.index)
    classes = {row.image_id: (1 if i % 2 else 2) for i, row in enumerate(index.itertuples())}
    index["labels"] = [json.dumps({**json.loads(l), "curvature": classes[i]}) for i, l in zip(index["image_id"], index["labels"])]
    index.to_parquet(study_run.index, index=False)
    build_study(study_config(study_run, trials=6, stratify_by_class=True), study_run)
    key = json.loads(StudyPaths(study_run).answer_key.read_text())
    cls = {**{str(k): str(v) for k, v in classes.items()}, **dict(zip(s["image_id"], s["curvature"].astype(str)))}
    assert len(key["trials"]) == 6
    for t in key["trials"]:
        assert {cls[a["image_id"]] for a in t["alternatives"]} == {t["stratum"]}


def test_rater_orders_are_seeded_permutations():
    a, b = rater_order(0, 1, 50), rater_order(0, 2, 50)
    assert sorted(a) == list(range(50)) and a != b and a == rater_order(0, 1, 50)


def test_encoding_is_identical_for_16bit_cache_and_8bit_or_16bit_inputs():
    rng = np.random.default_rng(0)
    smooth = (np.linspace(0, 1, 64)[None, :] * np.ones((64, 1)) * 65535).astype(np.uint16)
    noisy = rng.integers(0, 65535, (64, 64), dtype=np.uint16)
    eight = rng.integers(0, 255, (32, 32), dtype=np.uint8)
    files = [encode_png(a, 128) for a in (smooth, noisy, eight)]
    assert len({len(f) for f in files}) == 1  # uncompressed: size independent of content
    assert len({chunk_layout(f) for f in files}) == 1
    for f in files:
        assert {t for t, _ in png_chunks(f)} == {b"IHDR", b"IDAT", b"IEND"}
        with Image.open(io.BytesIO(f)) as im:
            assert im.mode == "L" and im.size == (128, 128) and not im.info


def test_built_study_blinding(built_study):
    cfg, run, paths = built_study
    study = json.loads(paths.study_json.read_text())
    key = json.loads(paths.answer_key.read_text())
    assert study["n_trials"] == 10 and study["alternatives"] == 4
    # the served folder holds the served images and nothing else
    files = sorted(paths.assets.iterdir())
    assert all(p.suffix == ".png" for p in files) and len(files) == 40
    kind = {}
    for t in key["trials"]:
        assert [a["asset"] for a in t["alternatives"]] == study["trials"][t["trial"]]["images"]
        assert t["alternatives"][t["real_position"]]["kind"] == "real"
        for a in t["alternatives"]:
            kind[a["asset"] + ".png"] = a["kind"]
    data = {p.name: p.read_bytes() for p in files}
    sizes = {"real": [], "synthetic": []}
    for name, b in data.items():
        sizes[kind[name]].append(len(b))
    # file size: identical for every file, so no test or classifier can separate the classes by it
    assert len(set(sizes["real"] + sizes["synthetic"])) == 1
    assert sps.mannwhitneyu(sizes["real"], sizes["synthetic"]).pvalue == pytest.approx(1.0)
    # dimensions, mode, chunk layout and header: identical; no ancillary (metadata) chunks at all
    assert len({chunk_layout(b) for b in data.values()}) == 1
    for b in data.values():
        assert {t for t, _ in png_chunks(b)} == {b"IHDR", b"IDAT", b"IEND"}
        with Image.open(io.BytesIO(b)) as im:
            assert im.mode == "L" and im.size == (96, 96) and not im.info
    # names are random, and nothing served names a source or a group
    ids = {a["image_id"] for t in key["trials"] for a in t["alternatives"]}
    public = paths.study_json.read_text()
    for word in list(ids) + list(GROUPS) + ["real", "synthetic", "holdout"]:
        assert word not in public
    for b in data.values():
        assert not any(i.encode() in b for i in ids)
    # every group appears once per trial (three checkpoints, quartets)
    for t in key["trials"]:
        assert sorted(a["group"] for a in t["alternatives"]) == sorted(("real",) + GROUPS)


def test_build_skips_when_built_and_refuses_to_invalidate_answers(built_study, caplog):
    cfg, run, paths = built_study
    before = paths.study_json.read_text()
    build_study(cfg, run)
    assert paths.study_json.read_text() == before
    with store.connect(paths.db) as conn:
        rater = store.raters(conn)[0]
        store.submit(conn, rater, 0, 1, [1, 2, 3, 4], 4, 4)
    with pytest.raises(StudyError, match="holds answers"):
        build_study(study_config(run, trials=8), run)
    assert paths.study_json.read_text() == before


def test_build_rebuilds_a_changed_design_without_answers(built_study):
    cfg, run, paths = built_study
    before = json.loads(paths.study_json.read_text())["fingerprint"]
    as_is = build_study(study_config(run, tone="as_is"), run)  # the tone policy is part of the design
    assert as_is["fingerprint"] != before and as_is["n_trials"] == 10
    study = build_study(study_config(run, trials=6, alternatives=2, likert_points=5), run)
    assert study["n_trials"] == 6 and study["alternatives"] == 2
    assert len(list(paths.assets.iterdir())) == 12
    with store.connect(paths.db) as conn:
        assert len(store.raters(conn)) == 3


def test_build_errors_name_the_file_and_problem(study_run):
    import pandas as pd

    idx = pd.read_parquet(study_run.index)
    idx["split"] = "train"
    idx.to_parquet(study_run.index, index=False)
    with pytest.raises(ValueError, match="index.parquet: no rows with split == 'holdout'"):
        build_study(study_config(study_run), study_run)


def test_build_leaves_out_images_the_audit_excluded(study_run):
    from cspine import atomic

    excluded = [f"final-{i:06d}" for i in range(24)]
    atomic.write_json(study_run.audit / "summary.json", {"passed": True, "n_flagged": 24, "excluded": excluded})
    build_study(study_config(study_run), study_run)
    key = json.loads(StudyPaths(study_run).answer_key.read_text())
    used = {a["image_id"] for t in key["trials"] for a in t["alternatives"]}
    assert not used & set(excluded)
    assert "final" not in key["groups"]


def test_private_files_are_0600_from_their_first_byte(tmp_path, monkeypatch):
    """The admin token and access codes: mode 0600 on disk, and already 0600 while the bytes are written
    (checked at the fsync, when the text is in the file), not chmod-ed after the fact."""
    import os
    import stat

    from reader_study import build

    modes = []
    real_fsync = os.fsync
    monkeypatch.setattr(build.os, "fsync", lambda fd: (modes.append(stat.S_IMODE(os.fstat(fd).st_mode)), real_fsync(fd)))
    target = tmp_path / "admin_token.txt"
    target.write_text("old\n")
    os.chmod(target, 0o644)
    build._write_private(target, "secret\n")
    assert modes == [0o600]
    assert target.read_text() == "secret\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
