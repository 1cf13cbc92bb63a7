"""Checkpoints and the exported pipeline of `cspine train` (model/checkpoints/step-N/, model/pipeline/).

A checkpoint folder holds accelerate's ``save_state`` (model, optimizer, LR schedule, RNG), ``unet_ema/``
(the EMA weights as a plain ``UNet2DModel`` folder, safetensors), ``ema_state.json`` (the EMA counters),
``scheduler/`` and ``trainer_state.json``. It is written under a temporary name and renamed, and
``trainer_state.json`` is what marks it complete, so a kill never leaves a half checkpoint that a resume
would read. The EMA weights are what is saved for sampling and exported as the ``DDPMPipeline``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from cspine import atomic
from cspine.rundir import RunDir


def list_checkpoints(run: RunDir) -> list[int]:
    """Steps of the complete checkpoints (a checkpoint folder only exists once fully written)."""
    return run.checkpoint_steps("trainer_state.json")


def read_trainer_state(run: RunDir, step: int) -> dict:
    """``trainer_state.json`` of checkpoint ``step`` (step, seed, world_size, and what the run chose)."""
    path = run.checkpoint(step) / "trainer_state.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable checkpoint state ({err}); "
                         "delete that checkpoint to resume from an older one") from None


def prune_checkpoints(run: RunDir, keep: int, protected: set[int]) -> list[int]:
    """Delete all but the newest ``keep`` checkpoints and those in ``protected``; return what was deleted."""
    steps = list_checkpoints(run)
    doomed = [s for s in steps[:-keep] if s not in protected] if keep > 0 else []
    for s in doomed:
        shutil.rmtree(run.checkpoint(s), ignore_errors=True)
    return doomed


def ema_unet(ema, unet_template):
    """A fresh ``UNet2DModel`` (same config as ``unet_template``) holding the EMA weights."""
    from diffusers import UNet2DModel

    model = UNet2DModel.from_config(unet_template.config)
    ema.copy_to(model.parameters())
    return model


def save_ema_unet(ema, unet_template, folder: Path) -> None:
    """Write the EMA weights as a plain UNet2DModel folder (safetensors) at ``folder``."""
    ema_unet(ema, unet_template).save_pretrained(folder, safe_serialization=True)


def ema_state(ema) -> dict:
    """The EMA counters (decay, step, warm-up settings) without the weights."""
    state = ema.state_dict()
    state.pop("shadow_params", None)
    return state


def restore_ema(ema, folder: Path) -> None:
    """Load EMA shadow weights (``unet_ema/``) and counters (``ema_state.json``) from a checkpoint."""
    from diffusers import UNet2DModel

    saved = UNet2DModel.from_pretrained(folder / "unet_ema", use_safetensors=True)
    state = json.loads((folder / "ema_state.json").read_text(encoding="utf-8"))
    state["shadow_params"] = [p.detach().clone().float() for p in saved.parameters()]
    ema.load_state_dict(state)


def save_checkpoint(run: RunDir, accelerator, ema, unet_template, noise_scheduler, trainer_state: dict,
                    keep: int, protected: set[int]) -> None:
    """Write checkpoint ``trainer_state["step"]`` (every process takes part) and prune the old ones."""
    at = trainer_state["step"]
    main = accelerator.is_main_process
    final = run.checkpoint(at)
    tmp = run.checkpoints / f".tmp-step-{at}"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    if main:
        save_ema_unet(ema, unet_template, tmp / "unet_ema")
        atomic.write_json(tmp / "ema_state.json", ema_state(ema))
        noise_scheduler.save_pretrained(tmp / "scheduler")
        atomic.write_json(tmp / "trainer_state.json", trainer_state)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        prune_checkpoints(run, keep, protected)
    accelerator.wait_for_everyone()


def export_pipeline(ema, unet_template, noise_scheduler, folder: Path) -> None:
    """Write the EMA ``DDPMPipeline`` (safetensors) to ``folder`` atomically (temp folder, then rename)."""
    from diffusers import DDPMPipeline

    tmp = folder.parent / f".tmp-{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=ema_unet(ema, unet_template), scheduler=noise_scheduler).save_pretrained(
        tmp, safe_serialization=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
