"""A disk cache of per-image feature vectors, shared across runs and stages (the audit and evaluation).

Where it sits: in the core, below both stages that embed images: privacy/audit.py caches every
embedder's features here, evaluation/features.py the FID Inception features (cspine/inception.py).

Embedding the same training images with the same network again is wasted work: a second audit (or FID
against the same training set) should read them back. Entries are keyed by ``(method_id, key)`` where
``method_id`` names the network, its weights and preprocessing (e.g. :func:`cspine.inception.network_id`,
``"fid-inception-v3:a16e4d89c0ec:..."``) and ``key`` is the sha256 of the image's pixel bytes *at the
resolution embedded* (:func:`image_key`).

Layout (default root ``runs/.cache/features/``, or ``$CSPINE_CACHE``)::

    ROOT/<method_id>/chunk-<uuid>.npy     structured array [('key', 'S32'), ('feat', '<f4', (D,))]

Chunks are append-only and written atomically (temp file, fsync, rename), so a run killed mid-write
leaves either a complete chunk or none; misses are flushed every ``flush_every`` rows, so a killed
embedding keeps what it finished. One file holds thousands of rows (not one file per image); when a
method has more than ``max_chunks`` chunks they are merged into one (under a file lock; a crash during
merging leaves duplicates, which are harmless because equal keys hold equal features).

Usage::

    cache = FeatureCache()
    feats = cache.embed(network_id(), images, [image_key(a) for a in images], fn, batch_size=64)

``fn`` gets a batch (``images[idx]`` for a numpy array, else a list) and returns ``[b, D]`` features;
``embed`` returns float32 ``[N, D]`` in input order and calls ``fn`` only on misses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from cspine import atomic

DEFAULT_ROOT = Path("runs/.cache/features")
ENV_VAR = "CSPINE_CACHE"


def image_key(arr: np.ndarray) -> str:
    """sha256 hex digest of an image's pixel bytes, its dtype and shape (the resolution embedded)."""
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def default_root() -> Path:
    """``$CSPINE_CACHE`` if set, else ``runs/.cache/features`` (relative to the working directory)."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_ROOT


def _safe_name(method_id: str) -> str:
    if not method_id:
        raise ValueError("method_id must be a non-empty string")
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", method_id)
    if name != method_id:  # keep distinct ids distinct after sanitising
        name += "-" + hashlib.sha1(method_id.encode()).hexdigest()[:8]
    return name


def _key_bytes(keys: Sequence[str]) -> np.ndarray:
    try:
        return np.array([bytes.fromhex(k) for k in keys], dtype="S32")
    except (ValueError, TypeError) as err:
        raise ValueError(f"feature cache keys must be sha256 hex digests (64 hex chars): {err}") from None


class FeatureCache:
    """Append-only feature store per method; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str] | None = None, max_chunks: int = 16):
        self.root = Path(root) if root is not None else default_root()
        self.max_chunks = max_chunks

    # -- storage ---------------------------------------------------------------------------
    def method_dir(self, method_id: str) -> Path:
        return self.root / _safe_name(method_id)

    @contextlib.contextmanager
    def _lock(self, method_id: str, exclusive: bool) -> Iterator[None]:
        d = self.method_dir(method_id)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _chunks(self, method_id: str) -> list[Path]:
        d = self.method_dir(method_id)
        return sorted(d.glob("chunk-*.npy")) if d.exists() else []

    def _write_chunk(self, method_id: str, keys: np.ndarray, feats: np.ndarray) -> Path:
        d = self.method_dir(method_id)
        d.mkdir(parents=True, exist_ok=True)
        rec = np.empty(len(keys), dtype=[("key", "S32"), ("feat", "<f4", (feats.shape[1],))])
        rec["key"] = keys
        rec["feat"] = feats
        final = d / f"chunk-{uuid.uuid4().hex}.npy"
        # atomic_path gives the file the mode a plain open() would: the cache is shared across runs
        with atomic.atomic_path(final) as tmp, open(tmp, "wb") as fh:
            np.save(fh, rec)
            fh.flush()
            os.fsync(fh.fileno())
        return final

    def load(self, method_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All stored (keys [M] 'S32', features [M, D] float32) of a method, duplicates removed."""
        with self._lock(method_id, exclusive=False):
            parts = []
            for p in self._chunks(method_id):
                try:
                    parts.append(np.load(p, mmap_mode="r"))
                except (ValueError, OSError, EOFError) as err:  # should not happen (atomic writes); skip, don't die
                    import warnings

                    warnings.warn(f"feature cache: unreadable chunk {p} skipped ({err})")
        if not parts:
            return np.empty(0, dtype="S32"), np.empty((0, 0), dtype=np.float32)
        dims = {p.dtype["feat"].shape[0] for p in parts}
        if len(dims) != 1:
            raise ValueError(f"feature cache {self.method_dir(method_id)} mixes feature sizes {sorted(dims)}")
        keys = np.concatenate([np.asarray(p["key"]) for p in parts])
        feats = np.concatenate([np.asarray(p["feat"], dtype=np.float32) for p in parts])
        keys, first = np.unique(keys, return_index=True)
        return keys, feats[first]

    def compact(self, method_id: str) -> None:
        """Merge a method's chunks into one (done automatically past ``max_chunks``)."""
        with self._lock(method_id, exclusive=True):
            old = self._chunks(method_id)
            if len(old) <= 1:
                return
            parts = [np.load(p) for p in old]
            rec = np.concatenate(parts)
            _, first = np.unique(rec["key"], return_index=True)
            rec = rec[np.sort(first)]
            self._write_chunk(method_id, rec["key"], rec["feat"])
            for p in old:
                p.unlink(missing_ok=True)

    def put(self, method_id: str, keys: Sequence[str], feats: np.ndarray) -> None:
        """Append features for ``keys`` (one atomic chunk)."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or len(feats) != len(keys):
            raise ValueError(f"put: expected features [{len(keys)}, D], got {feats.shape}")
        if len(keys):
            with self._lock(method_id, exclusive=False):
                self._write_chunk(method_id, _key_bytes(keys), feats)
            if len(self._chunks(method_id)) > self.max_chunks:
                self.compact(method_id)

    # -- the main entry point ------------------------------------------------------------------
    def embed(
        self,
        method_id: str,
        images: Sequence | np.ndarray,
        keys: Sequence[str],
        fn: Callable[[object], np.ndarray],
        batch_size: int = 64,
        flush_every: int = 2048,
        progress: bool = True,
        desc: str | None = None,
    ) -> np.ndarray:
        """Features of ``images`` in input order, computing ``fn`` only for keys not in the cache."""
        if len(images) != len(keys):
            raise ValueError(f"embed: {len(images)} images but {len(keys)} keys")
        want = _key_bytes(keys)
        have_keys, have_feats = self.load(method_id)
        out: np.ndarray | None = None
        hit = np.zeros(len(want), dtype=bool)
        if len(have_keys):
            pos = np.searchsorted(have_keys, want)
            pos = np.clip(pos, 0, len(have_keys) - 1)
            hit = have_keys[pos] == want
            out = np.empty((len(want), have_feats.shape[1]), dtype=np.float32)
            out[hit] = have_feats[pos[hit]]
        miss = np.flatnonzero(~hit)
        # identical images in one call are computed once
        miss_keys, miss_first, miss_inv = np.unique(want[miss], return_index=True, return_inverse=True)
        todo = miss[miss_first]
        computed = np.empty((len(todo), 0), dtype=np.float32)
        if len(todo):
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=desc or f"embed {method_id}", unit="img", disable=not progress,
                       leave=False)
            pending_k: list[np.ndarray] = []
            pending_f: list[np.ndarray] = []
            done_rows: list[np.ndarray] = []

            def flush() -> None:
                if pending_f:
                    k, f = np.concatenate(pending_k), np.concatenate(pending_f)
                    with self._lock(method_id, exclusive=False):
                        self._write_chunk(method_id, k, f)
                    pending_k.clear()
                    pending_f.clear()

            n_pending = 0
            for s in range(0, len(todo), batch_size):
                idx = todo[s : s + batch_size]
                batch = images[idx] if isinstance(images, np.ndarray) else [images[int(i)] for i in idx]
                f = np.asarray(fn(batch), dtype=np.float32)
                if f.ndim != 2 or len(f) != len(idx):
                    raise ValueError(f"embed {method_id}: fn returned {f.shape} for a batch of {len(idx)}")
                if out is not None and f.shape[1] != out.shape[1]:
                    raise ValueError(
                        f"embed {method_id}: fn returned {f.shape[1]}-d features but the cache at "
                        f"{self.method_dir(method_id)} holds {out.shape[1]}-d ones (use another method_id)"
                    )
                done_rows.append(f)
                pending_k.append(want[idx])
                pending_f.append(f)
                n_pending += len(idx)
                if n_pending >= flush_every:
                    flush()
                    n_pending = 0
                bar.update(len(idx))
            flush()
            bar.close()
            computed = np.concatenate(done_rows)
            if len(self._chunks(method_id)) > self.max_chunks:
                self.compact(method_id)
        if out is None:
            out = np.empty((len(want), computed.shape[1] if len(todo) else 0), dtype=np.float32)
        if len(miss):
            out[miss] = computed[miss_inv.ravel()]
        return out
