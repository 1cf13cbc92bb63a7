"""Config validation: wrong or missing keys fail before any work, naming the key and the file."""

from pathlib import Path

import pytest

from cspine.config import ConfigError
from cspine.stages import load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo.yaml", "csxa-256.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.name in name


def test_unknown_key_names_key_and_file(tmp_path):
    text = (REPO / "configs" / "demo.yaml").read_text().replace("max_steps:", "max_stepz:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "train.max_stepz" in str(err.value) and str(bad) in str(err.value)


def test_missing_key_names_key(tmp_path):
    lines = [l for l in (REPO / "configs" / "demo.yaml").read_text().splitlines() if not l.startswith("  source:")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("\n".join(lines))
    with pytest.raises(ConfigError, match=r"data\.source: missing required key"):
        load_config(bad)


def test_wrong_type_and_override(tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(REPO / "configs" / "demo.yaml", {"train.batch_size": "many"})
    assert load_config(REPO / "configs" / "demo.yaml", {"train.max_steps": 7}).train.max_steps == 7



def test_atomic_write_has_normal_permissions(tmp_path):
    import os
    import stat

    from cspine import atomic

    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".tmp-*"))
