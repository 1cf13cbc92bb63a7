"""Driver for tests/training/test_train_multiprocess.py: one process of a real `accelerate launch` run.

Calls ``training.train.train`` directly on the tiny test config and logs, per process, to
``LOG_DIR/rank{R}.jsonl``: the rows of every micro-batch it trained on (``batch_indices`` wrapped),
the loss of every step, and the precision record it trains with. ``--stop-after N`` ends the run
after step N through train's ``stop_after`` hook, as a kill would (the last checkpoint stays).

    ACCELERATE_USE_CPU=1 python -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no tests/training/mp_train_driver.py RUN_DIR LOG_DIR \\
        [--stop-after N] [--set K=V]

(``--multi_gpu`` with ``ACCELERATE_USE_CPU=1`` is how accelerate 1.15 starts several CPU processes: its
``--cpu --num_processes 2`` starts only one unless MPI is installed.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("log_dir", type=Path)
    ap.add_argument("--stop-after", type=int, default=None)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args(argv)

    import torch

    import training.train as tt
    from cspine.rundir import RunDir
    from tests.training.test_train import tiny_cfg

    torch.set_num_threads(1)
    state = tt.process_state()
    rank, world = state.process_index, state.num_processes
    args.log_dir.mkdir(parents=True, exist_ok=True)
    log = open(args.log_dir / f"rank{rank}.jsonl", "a", encoding="utf-8")

    def write(**row) -> None:
        log.write(json.dumps({"rank": rank, "world": world, **row}) + "\n")
        log.flush()

    real_batch_indices, real_choose = tt.batch_indices, tt.choose_precision

    def logged_batch_indices(n, seed, micro_step, batch_size, rank_=0, world_=1):
        rows = real_batch_indices(n, seed, micro_step, batch_size, rank_, world_)
        # the precision probe also asks (for its one local batch, world 1): the args say which call it was
        write(kind="batch", n=n, seed=seed, micro=micro_step, batch_size=batch_size, rank_arg=rank_,
              world_arg=world_, rows=rows.tolist())
        return rows

    def logged_choose(*a, **k):
        record = real_choose(*a, **k)
        write(kind="precision", record=record)
        return record

    tt.batch_indices, tt.choose_precision = logged_batch_indices, logged_choose
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.sets)}
    cfg = tiny_cfg(args.run_dir, **overrides)
    try:
        result = tt.train(cfg, RunDir(args.run_dir), progress=False, stop_after=args.stop_after,
                          on_step=lambda step, loss: write(kind="step", step=step, loss=loss))
        write(kind="done", step=result.step, resumed_from=result.resumed_from)
    except tt.TrainingInterrupted as err:
        write(kind="interrupted", message=str(err))
    finally:
        log.close()
    state.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
