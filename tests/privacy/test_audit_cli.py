"""`cspine audit` end to end on a contract-following run dir: flags a planted copy, gate, exclusion, reruns.

The fake run (tests/fakerun.py) holds blob images; one synthetic image is replaced by a training image
with a little noise. The Inception path runs the real FID network on a handful of images; the CLIP path
loads a checkpoint file this test saves from a *randomly initialised* tiny open_clip model (no CLIP
weights ship offline), through the same code that loads a downloaded or local checkpoint.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cspine.images import from_unit, to_unit, write_png
from cspine.gate import read_gate
from cspine.cli import main
from cspine.stages import load_config
from tests.fakerun import write_records


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CSPINE_CACHE", str(tmp_path / "feature-cache"))


def _plant_copy(run, sample_index: int = 3) -> tuple[str, str]:
    index = pd.read_parquet(run.index)
    row = index[index.split == "train"].iloc[5]
    src = np.load(run.pixels)[row.cache_row]
    noisy = from_unit(to_unit(src) + np.random.default_rng(0).normal(0, 0.01, src.shape))
    samples = pd.read_parquet(run.samples_table)
    write_png(run.samples / samples.file[sample_index], noisy)
    write_records(load_config(run.config), run, ("sample",))  # as if the model had made it
    return samples.image_id[sample_index], row.image_id


def _audit(run, *extra):
    return main(["audit", "--config", str(run.config), "--run-dir", str(run.root), "--no-progress", *extra])


def test_audit_flags_copy_gate_and_exclusion(fake_run, capsys):
    syn_id, train_id = _plant_copy(fake_run)
    strict = ("--methods", "pixel,phash,dhash", "--set", "audit.exclude_flagged=false")  # the demo config excludes
    assert _audit(fake_run, *strict) == 1
    summary = json.loads((fake_run.audit / "summary.json").read_text())
    assert summary["passed"] is False and syn_id in summary["flagged"] and summary["excluded"] == []
    assert summary["methods_run"] == ["pixel", "phash", "dhash"]
    assert {"thresholds", "dcr", "embedders", "timing", "n_flagged"} <= summary.keys()
    table = pd.read_parquet(fake_run.audit / "audit.parquet")
    for m in ("pixel", "phash", "dhash"):
        assert {f"{m}_nn_id", f"{m}_score", f"{m}_flag"} <= set(table.columns)
    hit = table.set_index("image_id").loc[syn_id]
    assert hit.flagged and hit.pixel_nn_id == train_id
    gate = read_gate(fake_run)
    assert not gate.passed and "audit failed" in gate.reason
    html = (fake_run.audit / "report.html").read_text()
    assert "FAILED" in html and syn_id in html and html.count("data:image/png;base64,") >= 3
    assert (fake_run.audit / "figures" / "distances.png").stat().st_size > 1000
    assert "figures/distances.png" in (fake_run.audit / "summary.md").read_text()

    capsys.readouterr()
    assert _audit(fake_run, *strict) == 1  # unchanged: skipped, same verdict
    assert "up to date" in capsys.readouterr().out

    assert _audit(fake_run, "--methods", "pixel,phash,dhash", "--exclude-flagged") == 0
    gate = read_gate(fake_run)
    assert gate.passed and syn_id in gate.excluded
    table = pd.read_parquet(fake_run.audit / "audit.parquet")
    assert table.loc[table.image_id == syn_id, "excluded"].item()
    assert set(table.loc[table.excluded, "image_id"]) == gate.excluded


def test_inception_embedder_and_feature_cache(tmp_path):
    from tests.fakerun import make_fake_run

    run = make_fake_run(tmp_path / "small", n_train=3, n_holdout=2, n_samples=2, with_model=False)
    assert _audit(run, "--methods", "inception") in (0, 1)  # 2 holdout images: the verdict is not the point
    s = json.loads((run.audit / "summary.json").read_text())
    assert s["methods_run"] == ["inception"] and "fid-inception-v3" in s["embedders"]["inception"]
    assert s["timing"]["inception"]["cache_hits"] == 0
    assert _audit(run, "--methods", "inception", "--force") in (0, 1)
    s = json.loads((run.audit / "summary.json").read_text())
    assert s["timing"]["inception"]["cache_hits"] == 7  # second audit: every image read from the cache


def test_clip_from_a_local_checkpoint_and_fallback(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    from privacy.config import AuditConfig
    from privacy.embedders import ClipEmbedder, build_embedders
    from tests.fakerun import make_fake_run

    cfg_dir = tmp_path / "clip-configs"
    cfg_dir.mkdir()
    (cfg_dir / "tiny-test-vit.json").write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(cfg_dir)
    model = open_clip.create_model("tiny-test-vit", pretrained=None)  # random weights: no CLIP ships offline
    ckpt = tmp_path / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))

    emb = ClipEmbedder("tiny-test-vit", str(ckpt)).load()
    imgs = (np.random.default_rng(0).random((3, 40, 40)) * 65535).astype(np.uint16)
    f = emb.compute(imgs)
    assert f.shape == (3, 32) and np.isfinite(f).all()
    assert emb.method_id.startswith("clip:tiny-test-vit:file-")
    for k, v in model.state_dict().items():  # the checkpoint's weights were loaded, not a fresh init
        assert np.array_equal(emb._model.state_dict()[k].numpy(), v.numpy()), k

    run = make_fake_run(tmp_path / "run", n_train=6, n_holdout=4, n_samples=3, with_model=False)
    assert main(["audit", "--config", str(run.config), "--run-dir", str(run.root), "--no-progress",
                 "--methods", "clip", "--set", "audit.clip.model=tiny-test-vit",
                 "--set", f"audit.clip.pretrained={ckpt}"]) in (0, 1)  # random weights: verdict not the point
    s = json.loads((run.audit / "summary.json").read_text())
    assert s["methods_run"] == ["clip"] and "tiny-test-vit" in s["embedders"]["clip"]

    notes: list[str] = []
    embs = build_embedders(AuditConfig(methods=["clip", "pixel"], clip={"pretrained": "no-such-tag"}), notes)
    assert [e.name for e in embs] == ["pixel", "inception"]  # CLIP unavailable: Inception runs in its place
    assert "clip skipped" in notes[0] and "inception added" in notes[1]
    bad: list[str] = []
    embs = build_embedders(AuditConfig(methods=["clip"], clip={"pretrained": str(tmp_path / "missing.safetensors")}), bad)
    assert "not found" in bad[0]


def test_bad_inputs_name_the_file(fake_run):
    samples = pd.read_parquet(fake_run.samples_table)
    (fake_run.samples / samples.file[0]).write_bytes(b"not a png")
    from cspine.rundata import RunDataError
    from privacy.inputs import AuditInputError, load_inputs

    with pytest.raises(RunDataError, match=str(samples.file[0]).split("/")[-1] + " is not a readable image"):
        load_inputs(fake_run)
    index = pd.read_parquet(fake_run.index)
    index["split"] = "train"
    index.to_parquet(fake_run.index)
    with pytest.raises(AuditInputError, match="no holdout"):
        load_inputs(fake_run)


def test_methods_option_names_every_method_the_config_accepts(fake_run, capsys):
    """--methods once offered only the five embedders, so its error and --help never named copydetect, the
    default's strongest method. The independent reference is privacy/config.py's Method type."""
    import typing

    from privacy.config import Method

    assert _audit(fake_run, "--methods", "pixel,nosuch") == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and all(m in err for m in typing.get_args(Method)) and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    out = capsys.readouterr().out
    assert "copydetect" in out and all(m in out for m in typing.get_args(Method))
