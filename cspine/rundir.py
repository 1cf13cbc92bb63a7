"""The run directory contract of ../shared/DESIGN.md, as code.

A run lives in ``runs/NAME/``; each stage reads the folders of the stages before it and writes only its
own. Every stage gets its paths from :class:`RunDir` rather than joining strings, so the layout is fixed
in one place::

    runs/NAME/
      config.yaml                    resolved config of this run (written once, when the run is created)
      log.txt                        the one log of every command run on it
      STAGE/record.json              provenance of each stage (cspine.provenance)
      data/     index.parquet        one row per source image (see INDEX_COLUMNS)
                ingest_report.json   every skipped file with its reason, duplicates
                pixels.npy           uint16 [N, R, R] pixel cache, row i = index row i (cache_row)
      model/    checkpoints/step-N/  resumable training state
                pipeline/            EMA DDPMPipeline (safetensors), what is sampled and released
                loss.csv, grids/     training log and periodic sample grids
      samples/  images/*.png         synthetic images (16-bit PNG by default)
                samples.parquet      image_id, file, seed, scheduler, steps, checkpoint, curvature, keypoints
      audit/    audit.parquet, summary.json, report.html, figures
      eval/     metrics.json, figures
      study/    study.json, answer_key.json, responses.sqlite, results.json
      release/  dataset/ (card, data/*.parquet, manifest.json)   model/ (card + pipeline)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cspine.errors import StageError


class MissingInput(StageError, FileNotFoundError):
    """A stage's input is not there yet: run the stage that makes it (exit code 2)."""


_STEP = re.compile(r"step-(\d+)")


def checkpoint_step(name: str) -> int | None:
    """N of a "step-N" checkpoint name, else None: the one place that parses the name."""
    m = _STEP.fullmatch(name)
    return int(m.group(1)) if m else None

#: Columns of ``data/index.parquet``. ``split`` is "train" or "holdout"; ``labels`` is a JSON string
#: (CSXA: keypoints scaled to the cached image, curvature class, sex, age); ``width``/``height`` are the
#: source image's size; ``cache_row`` is the row of ``pixels.npy`` holding the resized image.
INDEX_COLUMNS = (
    "image_id",
    "source",
    "sha256",
    "split",
    "case_id",
    "labels",
    "width",
    "height",
    "cache_row",
)

#: Columns of ``samples/samples.parquet``; ``file`` is relative to ``samples/``. ``curvature`` is the class
#: 1-5 a conditional model was asked for (null: unconditional); ``keypoints`` the image's 23 landmarks as JSON
#: ``{label: [x, y]}`` in its pixels (null: none), the format of ``labels.keypoints`` in index.parquet.
SAMPLES_COLUMNS = ("image_id", "file", "seed", "scheduler", "steps", "checkpoint", "curvature", "keypoints")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory. Construct with the run's root folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- top level -------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    # -- data/ (prepare) -------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def index(self) -> Path:
        return self.data / "index.parquet"

    @property
    def ingest_report(self) -> Path:
        return self.data / "ingest_report.json"

    @property
    def pixels(self) -> Path:
        return self.data / "pixels.npy"

    # -- model/ (train) --------------------------------------------------------------------
    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.model / "checkpoints"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step}"

    def checkpoint_steps(self, complete_marker: str = "trainer_state.json") -> list[int]:
        """Steps of the checkpoint folders holding ``complete_marker`` (a folder is renamed into place only
        once fully written, so the marker is there for every finished one), sorted."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(s for p in self.checkpoints.iterdir()
                      if p.is_dir() and (s := checkpoint_step(p.name)) is not None and (p / complete_marker).exists())

    def unet_folder(self, checkpoint: str) -> Path:
        """The EMA U-Net of ``checkpoint``: "final" is model/pipeline/unet, "step-N" that checkpoint's unet_ema/."""
        if checkpoint == "final":
            return self.pipeline / "unet"
        step = checkpoint_step(checkpoint)
        if step is None:
            raise ValueError(f'checkpoint must be "final" or "step-N", got {checkpoint!r}')
        return self.checkpoint(step) / "unet_ema"

    @property
    def pipeline(self) -> Path:
        return self.model / "pipeline"

    @property
    def loss_log(self) -> Path:
        return self.model / "loss.csv"

    @property
    def grids(self) -> Path:
        return self.model / "grids"

    # -- samples/ (sample) -----------------------------------------------------------------
    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def sample_images(self) -> Path:
        return self.samples / "images"

    @property
    def samples_table(self) -> Path:
        return self.samples / "samples.parquet"

    @property
    def sampler_config(self) -> Path:
        """The scheduler config the samples were drawn with (diffusers' save_config), shipped with the model."""
        return self.samples / "scheduler" / "scheduler_config.json"

    # -- audit/, eval/, study/ ---------------------------------------------------------------
    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def audit_summary(self) -> Path:
        return self.audit / "summary.json"

    @property
    def audit_table(self) -> Path:
        return self.audit / "audit.parquet"

    @property
    def eval_metrics(self) -> Path:
        return self.eval / "metrics.json"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def study(self) -> Path:
        return self.root / "study"

    # -- release/ --------------------------------------------------------------------------
    @property
    def release(self) -> Path:
        return self.root / "release"

    @property
    def release_dataset(self) -> Path:
        return self.release / "dataset"

    @property
    def release_model(self) -> Path:
        return self.release / "model"

    @property
    def published(self) -> Path:
        """Where ``cspine publish`` keeps its record (release/ holds the package stage's)."""
        return self.release / "published"

    def require(self, path: Path, stage: str) -> Path:
        """Return ``path`` if it exists, else raise a clear error naming the stage that makes it."""
        if not path.exists():
            raise MissingInput(
                f"{path} does not exist: run `cspine {stage}` for this run first "
                f"(run directory {self.root})"
            )
        return path
