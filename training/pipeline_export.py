"""Export of a conditional run's model/pipeline/: the custom diffusers pipeline folder that `package` releases.

Where it sits: called by `cspine train` at the end of a conditional run (an unconditional run exports a stock
``DDPMPipeline``, training.checkpoints.export_pipeline). The folder is what diffusers documents for a pipeline
class shipped in a repository: ``pipeline.py`` (a verbatim copy of cspine/generation/hub_pipeline.py) next to
``model_index.json`` whose ``_class_name`` is ``["pipeline", "CSpineConditionalPipeline"]``, plus the usual
``unet/`` (safetensors) and ``scheduler/`` folders. The shape model and the blob radius are plain config
values of the pipeline (in model_index.json), so the released pipeline draws the layouts the run drew. Load:

    DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)

(or ``custom_pipeline=folder_or_repo``); diffusers refuses code in a repository without ``trust_remote_code``.
Written to a temporary folder and renamed, as the unconditional export.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

PIPELINE_CLASS = "CSpineConditionalPipeline"
PIPELINE_FILE = "pipeline.py"


def export_conditional_pipeline(ema, unet_template, noise_scheduler, folder: Path, shape_model: dict | None,
                                map_sigma: float) -> None:
    """Write the EMA weights as a ``CSpineConditionalPipeline`` folder at ``folder`` atomically."""
    from cspine.generation import hub_pipeline
    from training.checkpoints import ema_unet

    tmp = folder.parent / f".tmp-{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = hub_pipeline.CSpineConditionalPipeline(unet=ema_unet(ema, unet_template), scheduler=noise_scheduler,
                                                  shape_model=shape_model, map_sigma=map_sigma)
    pipe.save_pretrained(tmp, safe_serialization=True)
    index_path = tmp / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["_class_name"] = [Path(PIPELINE_FILE).stem, PIPELINE_CLASS]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    shutil.copyfile(hub_pipeline.__file__, tmp / PIPELINE_FILE)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def is_conditional_pipeline(folder: Path) -> bool:
    """Whether ``folder`` (model/pipeline or release/model) holds the custom conditional pipeline."""
    try:
        name = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(name, list) and name[-1] == PIPELINE_CLASS
