"""Seeds of the random streams of training and sampling: one formula, one place.

Every random stream of the model stage is named by integers after the run seed and gets its own 63-bit
seed from :func:`stream_seed`, so what it draws depends only on those numbers (not on batch size, shard,
process or device). The streams in use, and their names:

- ``(i,)``                  synthetic image ``i``: its initial and every step's noise (cspine.generation.sampling)
- ``(1, epoch)``            the permutation of the training images in ``epoch`` (training.train_data)
- ``(2, micro, rank)``      the noise and timesteps of micro-batch ``micro`` on process ``rank`` (training.loss)
- ``(3, k, i)``             conditional synthetic image ``i`` of curvature class ``k``: its noise (cspine.generation.sampling)
- ``(4, k, i)``             the landmark layout of that image (cspine.generation.shape_model)
- ``(5, micro, rank)``      which images of a micro-batch train with class and layout dropped (training.train_data)

The names differ in length or first number, so no two streams share a seed sequence. Changing the formula would change
the images and batches of every existing run.
"""

from __future__ import annotations

import numpy as np


def stream_seed(seed: int, *parts: int) -> int:
    """The 63-bit seed of the stream named by ``parts`` of a run with master ``seed`` (no collisions in
    practice): ``SeedSequence([seed mod 2**32, *parts])``'s first two 32-bit words folded into 63 bits."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(int, parts)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF
