"""Map a function over jobs in worker processes, in order, with a progress bar.

Used by the stages whose per-item work is CPU-bound pure Python/numpy (drawing phantoms, decoding
radiographs). Small job lists run in this process: starting a pool costs more than it saves.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence, TypeVar

from tqdm import tqdm

J = TypeVar("J")
R = TypeVar("R")


def map_with_progress(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    workers: int,
    desc: str,
    progress: bool = True,
    min_parallel: int = 16,
    unit: str = "img",
) -> list[R]:
    """``[fn(job) for job in jobs]``, in worker processes when ``workers > 1`` and there are at least
    ``min_parallel`` jobs; results keep the order of ``jobs``. ``fn`` must be picklable (module level)."""
    out: list[R] = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1 and len(jobs) >= min_parallel:
            chunksize = max(1, min(16, len(jobs) // (4 * workers)))
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for res in pool.map(fn, jobs, chunksize=chunksize):
                    out.append(res)
                    bar.update()
        else:
            for job in jobs:
                out.append(fn(job))
                bar.update()
    return out
