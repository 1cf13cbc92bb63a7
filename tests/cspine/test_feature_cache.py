"""The shared feature cache: hits skip the network, order is kept, killed writes leave no partial chunk."""

from __future__ import annotations

import numpy as np
import pytest

from cspine.feature_cache import FeatureCache, image_key


def _fn_counter():
    calls = []

    def fn(batch):
        calls.append(len(batch))
        return np.asarray(batch, dtype=np.float32).reshape(len(batch), -1)[:, :3] * 2

    return fn, calls


def test_embed_computes_only_misses_and_keeps_order(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.random((50, 4, 4)).astype(np.float32)
    keys = [image_key(a) for a in imgs]
    cache = FeatureCache(tmp_path)
    fn, calls = _fn_counter()
    first = cache.embed("m", imgs[:30], keys[:30], fn, batch_size=8, flush_every=10, progress=False)
    assert sum(calls) == 30
    calls.clear()
    # shuffled superset: only the 20 new images are computed, output is in the input order
    order = rng.permutation(50)
    feats = cache.embed("m", imgs[order], [keys[i] for i in order], fn, batch_size=8, progress=False)
    assert sum(calls) == 20
    np.testing.assert_allclose(feats, imgs[order].reshape(50, -1)[:, :3] * 2)
    np.testing.assert_allclose(first, imgs[:30].reshape(30, -1)[:, :3] * 2)
    calls.clear()
    cache.embed("m", list(imgs), keys, fn, progress=False)  # a list works too; everything is a hit now
    assert calls == []
    # another method id is a separate store
    cache.embed("other net/v2", imgs[:5], keys[:5], fn, progress=False)
    assert sum(calls) == 5


def test_compaction_and_duplicates(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.random((40, 2, 2)).astype(np.float32)
    keys = [image_key(a) for a in imgs]
    cache = FeatureCache(tmp_path, max_chunks=3)
    fn, _ = _fn_counter()
    for s in range(0, 40, 5):
        cache.embed("m", imgs[s : s + 5], keys[s : s + 5], fn, progress=False)
    cache.put("m", keys[:5], imgs[:5].reshape(5, -1)[:, :3] * 2)  # duplicate rows are harmless
    assert len(cache._chunks("m")) <= 3
    k, f = cache.load("m")
    assert len(k) == 40 and f.shape == (40, 3)


def test_killed_write_leaves_no_partial_chunk(tmp_path):
    imgs = np.arange(20, dtype=np.float32).reshape(20, 1)
    keys = [image_key(a) for a in imgs]
    cache = FeatureCache(tmp_path)

    def dies(batch):
        if dies.n >= 2:
            raise KeyboardInterrupt
        dies.n += 1
        return np.asarray(batch, dtype=np.float32)

    dies.n = 0
    with pytest.raises(KeyboardInterrupt):
        cache.embed("m", imgs, keys, dies, batch_size=4, flush_every=4, progress=False)
    assert not list(cache.method_dir("m").glob(".tmp-*"))
    k, _ = cache.load("m")
    assert len(k) == 8  # the two finished batches were kept
    fn, calls = _fn_counter()
    cache.embed("m", imgs, keys, lambda b: np.asarray(b, dtype=np.float32), progress=False)
    assert len(cache.load("m")[0]) == 20


def test_env_var_sets_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CSPINE_CACHE", str(tmp_path / "c"))
    assert FeatureCache().root == tmp_path / "c"
    with pytest.raises(ValueError, match="sha256"):
        FeatureCache().embed("m", [np.zeros(1)], ["nothex"], lambda b: np.zeros((1, 1)), progress=False)
