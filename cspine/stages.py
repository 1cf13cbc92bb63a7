"""The stage table: the one place that knows every stage, and the composed config derived from it.

Where it sits: the top of the ``cspine`` package, above the stages (the core modules under it import no
stage). The `cspine` command (``cspine.cli``), its help, ``cspine release``'s order and the composed
:data:`Config` are all derived from :data:`STAGES`. Adding a stage is one package with a command module
(``add_arguments``, ``run``, ``summary``) and one row here.

Each row says which config sections the stage owns, where its ``record.json`` goes, what it reads and what
it writes (as content fingerprints, cspine.rundata) and which stages it needs. :func:`execute` runs a stage
under the provenance rules of cspine.provenance: skip when up to date; refuse when a needed stage is not
up to date (naming what changed); clear the stage's folder before re-running when its inputs changed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import Field, create_model, model_validator

from cspine import provenance as prov
from cspine import rundata
from cspine.config import RunConfig, load_config_file
from cspine.errors import StageError
from cspine.rundir import RunDir, checkpoint_step
from evaluation import cli as evaluation_cli
from evaluation.config import EvaluateConfig
from privacy import cli as privacy_cli
from privacy.config import AuditConfig
from reader_study.config import StudyConfig
from release import commands as release_cli
from release.config import ReleaseConfig
from training import cli_data, cli_model
from training.config import DataConfig, ModelConfig, SampleConfig, TrainConfig

log = logging.getLogger("cspine")

Fingerprints = Callable[[Any, RunDir], dict]


@dataclass(frozen=True)
class Stage:
    """One row of the stage table.

    ``command`` is the stage package's :class:`cspine.command.Command` (its run function, summary line and
    options). ``folder`` is where its ``record.json`` lives (None: a tool
    with no record). ``resumable`` are config keys whose change resumes the stage instead of restarting it.
    """

    name: str
    help: str
    command: Any
    sections: tuple[str, ...] = ()
    folder: Callable[[Any, RunDir], Path] | None = None
    inputs: Fingerprints = lambda cfg, run: {}
    outputs: Fingerprints = lambda cfg, run: {}
    needs: tuple[str, ...] = ()
    in_release: Callable[[Any], bool] = lambda cfg: True
    resumable: frozenset[str] = frozenset()
    distributed: bool = False
    description: str = ""

    def config_of(self, cfg) -> dict:
        """The config a stage's record keeps: its own sections plus the run seed."""
        return {"seed": cfg.seed, **{s: getattr(cfg, s).model_dump(mode="json") for s in self.sections}}

    def view(self, cfg):
        """What the stage's run function gets: the run keys (name, seed, run_dir) and its own sections only, so
        its record (:meth:`config_of`) holds every key it can read; reading another stage's section is an
        AttributeError, not a silent dependency."""
        model = _views.get(self.sections)
        if model is None:
            model = create_model(f"{''.join(p.title() for p in self.name.split('-'))}StageConfig", __base__=RunConfig,
                                 **{s: (SECTIONS[s][0], ...) for s in self.sections})
            _views[self.sections] = model
        return model.model_construct(name=cfg.name, seed=cfg.seed, run_dir=cfg.run_dir,
                                     **{s: getattr(cfg, s) for s in self.sections})


_views: dict[tuple[str, ...], type] = {}


# -- inputs and outputs of each stage (all by content, cspine.rundata) ----------------------------------------

def _source(cfg, run):
    return {"source": prov.stat_fp(Path(cfg.data.path))}


def _data(cfg, run):
    return rundata.data_fp(run)


def _sampled_weights(cfg, run):
    return {ck: rundata.weights_fp(run, ck) for ck in cfg.sample.checkpoints}


def _audit_inputs(cfg, run):
    return {**rundata.data_fp(run), "weights": _sampled_weights(cfg, run), "samples": rundata.samples_fp(run)}


def _package_inputs(cfg, run):
    return {"audit": {"summary.json": rundata.sha256_memo(run.audit_summary),
                      "audit.parquet": rundata.sha256_memo(run.audit_table)},
            "samples": rundata.samples_fp(run), "pipeline": rundata.pipeline_fp(run),
            "eval": rundata.files(run.eval), "study": rundata.files(run.study / "figures") | {
                "summary.md": rundata.sha256_memo(run.study / "summary.md")}}


STAGES: tuple[Stage, ...] = (
    Stage("demo-data", "write the procedural phantom radiographs (CSXA layout) that the demo runs on",
          cli_data.DEMO, sections=("data",), folder=lambda cfg, run: run.root / "demo-data",
          outputs=_source, in_release=lambda cfg: cfg.data.source == "phantom"),
    Stage("prepare", "ingest radiographs (DICOM, PNG/JPEG, CSXA) into data/: index, pixel cache, split",
          cli_data.PREPARE, sections=("data",), folder=lambda cfg, run: run.data,
          inputs=_source, outputs=lambda cfg, run: {**rundata.data_fp(run),
                                                    "ingest_report.json": rundata.sha256_memo(run.ingest_report)}),
    Stage("train", "train the DDPM (diffusers + accelerate) into model/", cli_model.TRAIN,
          sections=("model", "train"), folder=lambda cfg, run: run.model, inputs=_data,
          outputs=lambda cfg, run: {"pipeline": rundata.pipeline_fp(run)}, needs=("prepare",),
          resumable=frozenset({"train.max_steps", "train.checkpoint_every", "train.keep_checkpoints",
                               "train.sample_every", "train.grid_images", "train.grid_steps", "train.tensorboard",
                               "train.num_threads"}), distributed=True),
    Stage("sample", "generate synthetic images into samples/", cli_model.SAMPLE, sections=("sample",),
          folder=lambda cfg, run: run.samples, inputs=lambda cfg, run: {"weights": _sampled_weights(cfg, run)},
          outputs=lambda cfg, run: rundata.samples_fp(run), needs=("train",), distributed=True),
    Stage("audit", "privacy audit: nearest training neighbours, calibrated flags, the release gate",
          privacy_cli.AUDIT, sections=("audit",), folder=lambda cfg, run: run.audit, inputs=_audit_inputs,
          outputs=lambda cfg, run: {"summary.json": rundata.sha256_memo(run.audit_summary),
                                    "audit.parquet": rundata.sha256_memo(run.audit_table)},
          needs=("prepare", "sample")),
    Stage("evaluate", "quality (FID/KID, C2ST, precision/recall), control and label fidelity, downstream utility",
          evaluation_cli.EVALUATE, sections=("evaluate",), folder=lambda cfg, run: run.eval,
          inputs=lambda cfg, run: {**rundata.data_fp(run), "samples": rundata.samples_fp(run)},
          outputs=lambda cfg, run: {name: rundata.sha256_memo(run.eval / name) for name in ("metrics.json", "utility.json")
                                    if (run.eval / name).is_file()},
          needs=("prepare", "sample"), in_release=lambda cfg: cfg.evaluate.enabled),
    Stage("package", "Parquet shards, dataset card and model card into release/", release_cli.PACKAGE,
          sections=("release",), folder=lambda cfg, run: run.release, inputs=_package_inputs,
          outputs=lambda cfg, run: rundata.released_fp(run), needs=("audit",)),
    Stage("publish", "copy release/ to the local hub folder (default) or upload it to the Hugging Face Hub",
          release_cli.PUBLISH, sections=("release",), folder=lambda cfg, run: run.published,
          inputs=lambda cfg, run: rundata.released_fp(run), needs=("package",)),
)

#: Commands that are not pipeline stages: no record, not run by `cspine release`.
TOOLS: tuple[Stage, ...] = (
    Stage("verify", "check a release folder against its manifest", release_cli.VERIFY, in_release=lambda cfg: False),
)



# -- the composed config ---------------------------------------------------------------------------------------

#: Config sections: the model of each and whether a run config must name it.
SECTIONS: dict[str, tuple[type, bool]] = {
    "data": (DataConfig, True), "model": (ModelConfig, True), "train": (TrainConfig, True),
    "sample": (SampleConfig, True), "audit": (AuditConfig, False), "evaluate": (EvaluateConfig, False),
    "study": (StudyConfig, False), "release": (ReleaseConfig, False),
}
assert {s for st in STAGES for s in st.sections} <= set(SECTIONS), "a stage owns a section that is not composed"

def _kept_checkpoints(cfg):
    """Across sections: every "step-N" that sampling reads must be a checkpoint training keeps."""
    missing = [c for c in cfg.sample.checkpoints
               if (step := checkpoint_step(c)) is not None and step not in cfg.train.keep_steps]
    if missing:
        raise ValueError(f"sample.checkpoints names {missing}, which training may prune: add their steps to "
                         "train.keep_steps")
    return cfg


Config = create_model(
    "Config", __base__=RunConfig, __doc__="The whole run config: the run keys plus one section per stage.",
    __validators__={"kept_checkpoints": model_validator(mode="after")(_kept_checkpoints)},
    **{name: ((model, ...) if required else (model, Field(default_factory=model)))
       for name, (model, required) in SECTIONS.items()},
)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None):
    """Load and validate a run config YAML as the composed :data:`Config` (see cspine.config)."""
    return load_config_file(path, Config, overrides)


def by_name(name: str) -> Stage:
    """The row of stage ``name``."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage {name!r} in the stage table")


def release_stages(cfg) -> list[Stage]:
    """The stages `cspine release` runs for ``cfg``, in pipeline order."""
    return [s for s in STAGES if s.in_release(cfg)]


# -- running a stage under its record -------------------------------------------------------------------------

@dataclass
class Outcome:
    stage: str
    ran: bool
    result: Any = None
    why: str = ""
    seconds: float = 0.0
    verdict: str | None = None
    summary: str = ""


def _changes(stage: Stage, rec: dict, cfg, run: RunDir) -> tuple[list[str], list[str], list[str]]:
    """(changed inputs, changed config keys, changed outputs) of ``stage`` against its record ``rec``."""
    inputs = prov.changed_keys(rec.get("inputs", {}), stage.inputs(cfg, run))
    config = prov.changed_keys(rec.get("config", {}), stage.config_of(cfg))
    outputs = prov.changed_keys(rec.get("outputs", {}), stage.outputs(cfg, run)) if rec.get("complete") else []
    return inputs, config, outputs


def staleness(stage: Stage, cfg, run: RunDir, config: bool = True) -> str | None:
    """Why ``stage`` is not up to date for ``cfg`` (None when it is). ``config=False`` asks only whether its
    record is finished and still true of the files (its inputs and outputs are as recorded): what a later
    stage needs of it, whatever options it was run with."""
    rec = prov.read_record(stage.folder(cfg, run))
    if rec is None:
        return f"`cspine {stage.name}` has not run for {run.root}"
    if not rec.get("complete"):
        return f"`cspine {stage.name}` did not finish"
    inputs, changed_config, outputs = _changes(stage, rec, cfg, run)
    if inputs:
        return prov.describe_changes(inputs, f"the inputs of `cspine {stage.name}`")
    if changed_config and config:
        return prov.describe_changes(changed_config, f"the config of `cspine {stage.name}`")
    if outputs:
        return prov.describe_changes(outputs, f"the outputs of `cspine {stage.name}`")
    return None


def check_needs(stage: Stage, cfg, run: RunDir, seen: set[str] | None = None) -> None:
    """Refuse (exit 2) unless every stage ``stage`` needs, transitively, is up to date. The earliest stale
    stage is named (its own needs are checked before it), since that is the one to run."""
    seen = set() if seen is None else seen
    for name in stage.needs:
        if name in seen:
            continue
        seen.add(name)
        need = by_name(name)
        check_needs(need, cfg, run, seen)
        why = staleness(need, cfg, run, config=False)
        if why:
            raise StageError(f"`cspine {stage.name}` needs `cspine {name}` to be up to date: {why}. "
                             f"Run `cspine {name}` (or `cspine release`, which runs every stage in order).")


class _Dist:
    """Main-process and barrier under `accelerate launch` (several processes); trivial otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.state = None
        if enabled and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState
            from accelerate.utils import parse_flag_from_env

            self.state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))

    @property
    def main(self) -> bool:
        return self.state is None or self.state.is_main_process

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


def execute(stage: Stage, cfg, run: RunDir, args: argparse.Namespace) -> Outcome:
    """Run ``stage`` on ``run`` under its provenance record (see the module docstring). The options in
    ``args`` may ask for a re-run although it is up to date (``Command.reruns``) or for a restart."""
    t0 = time.perf_counter()
    if stage.folder is None:  # a tool: no record, no config
        result = stage.command.run(cfg, run, args)
        return Outcome(stage.name, True, result, seconds=time.perf_counter() - t0,
                       summary=stage.command.summary(result, cfg, run))
    check_needs(stage, cfg, run)
    folder = stage.folder(cfg, run)
    dist = _Dist(stage.distributed)
    rec = prov.read_record(folder)
    why, reset = "first run", False
    if stage.command.restarts(args):
        why, reset = "restart asked for", True
    elif rec is not None:
        inputs, config, outputs = _changes(stage, rec, cfg, run)
        if inputs:
            why, reset = prov.describe_changes(inputs, "inputs"), True
        elif outputs:
            why, reset = prov.describe_changes(outputs, "outputs (altered since it ran)"), True
        elif config:
            why = prov.describe_changes(config, "config")
            reset = not set(config) <= stage.resumable
        elif stage.command.reruns(args):
            why = "re-run asked for"
        elif rec.get("complete"):
            verdict = _verdict(stage, cfg, run)
            return Outcome(stage.name, False, None, "up to date", time.perf_counter() - t0, verdict,
                           f"{stage.name}: up to date ({folder / prov.RECORD})")
        else:
            why = "resuming an unfinished run"
    if reset:
        log.info("%s: %s; clearing %s and starting over", stage.name, why, folder)
        if dist.main:
            _clear(folder)
        dist.wait()
    else:
        log.info("%s: %s", stage.name, why)
    inputs_now = stage.inputs(cfg, run)
    started = time.time()
    if dist.main:
        prov.write_record(folder, stage.name, stage.config_of(cfg), inputs_now, None, started)
    dist.wait()
    result = stage.command.run(stage.view(cfg), run, args)
    dist.wait()
    if dist.main:
        prov.write_record(folder, stage.name, stage.config_of(cfg), inputs_now, stage.outputs(cfg, run), started,
                          extra={"reason": why})
    dist.wait()
    summary = stage.command.summary(result, cfg, run)
    return Outcome(stage.name, True, result, why, time.perf_counter() - t0, _verdict(stage, cfg, run), summary)


def _verdict(stage: Stage, cfg, run: RunDir) -> str | None:
    return stage.command.verdict(cfg, run) if stage.command.verdict else None


def _clear(folder: Path) -> None:
    """Empty a stage's folder (the folder itself stays)."""
    if folder.is_dir():
        for p in folder.iterdir():
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
