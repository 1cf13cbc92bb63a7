"""The shared fake run directory follows the contract the later stages read."""

import numpy as np
import pandas as pd

from cspine.images import read_gray
from cspine.rundir import INDEX_COLUMNS, SAMPLES_COLUMNS


def test_fake_run_follows_contract(fake_run):
    index = pd.read_parquet(fake_run.index)
    assert tuple(index.columns) == INDEX_COLUMNS
    pixels = np.load(fake_run.pixels, mmap_mode="r")
    assert pixels.dtype == np.uint16 and pixels.shape[0] == len(index)
    assert set(index.split) == {"train", "holdout"}
    samples = pd.read_parquet(fake_run.samples_table)
    assert tuple(samples.columns) == SAMPLES_COLUMNS
    img = read_gray(fake_run.samples / samples.file[0])
    assert img.dtype == np.uint16 and img.shape == pixels.shape[1:]
    assert (fake_run.pipeline / "model_index.json").exists()
