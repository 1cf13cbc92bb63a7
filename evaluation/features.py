"""Inception features of an image set, read from / written to the shared per-image feature cache.

The cache (cspine.feature_cache) is keyed by the network id (cspine.inception.network_id) and the
sha256 of each image's uint16 pixels, so the privacy audit and `cspine evaluate` embed each image once.
"""

from __future__ import annotations

import numpy as np

from cspine.feature_cache import FeatureCache, image_key
from cspine.inception import inception_features, network_id
from evaluation.data import ImageSet


def set_features(images: ImageSet, cache: FeatureCache | None = None, batch_size: int = 32,
                 progress: bool = True) -> np.ndarray:
    """float32 ``[n, 2048]`` FID Inception features of ``images`` (uint16 pixels), cached per image hash."""
    cache = cache if cache is not None else FeatureCache()
    keys = [image_key(a) for a in images.pixels]
    return cache.embed(
        network_id(), images.pixels, keys,
        lambda batch: inception_features(np.asarray(batch), batch_size=batch_size),
        batch_size=batch_size, progress=progress, desc=f"inception {images.name}",
    )
