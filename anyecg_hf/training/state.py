"""Training state: the counters saved with every checkpoint (exact resume), the checkpoint folders, the best
checkpoint by a validation metric, and the config flattened for trackers."""

from __future__ import annotations

import copy
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainState", "flat_config", "list_checkpoints", "metric_mode", "record_eval", "resolve_resume", "save_checkpoint"]


def metric_mode(name: str) -> str:
    """Whether a larger (`"max"`) or smaller (`"min"`) value of a metric is better."""
    return "min" if any(k in name for k in ("loss", "mae", "rmse", "brier", "ibs", "ece")) else "max"


@dataclass
class TrainState:
    """Counters saved with every checkpoint (`accelerator.register_for_checkpointing`)."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # dataloader batches consumed in the current epoch (skipped on resume)
    best_metric: float | None = None
    best_step: int | None = None
    history: list = field(default_factory=list)  # {"step", "loss", "lr"} per logged step
    evals: list = field(default_factory=list)  # {"step", **metrics}

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(copy.deepcopy(state))


def list_checkpoints(out: Path) -> list[Path]:
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("step_*") if p.is_dir()), key=lambda p: int(p.name.split("_")[1]))


def save_checkpoint(accelerator, out: Path, step: int, keep: int) -> Path:
    """`accelerator.save_state` into `out/checkpoints/step_<step>` (model, optimizer, scheduler, RNG states, dataloader
    position and the registered `TrainState`: what exact resume needs), keeping the last `keep` checkpoints."""
    folder = out / "checkpoints" / f"step_{step}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        for old in list_checkpoints(out)[: -max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder


def resolve_resume(value, out: Path) -> Path | None:
    """The checkpoint to resume from: a folder, `"latest"` (the newest in `out/checkpoints`, `None` when there is
    none yet) or nothing."""
    if not value:
        return None
    if value == "latest":
        found = list_checkpoints(out)
        return found[-1] if found else None
    p = Path(value)
    if not p.is_dir():
        raise ValueError(f"training.resume_from_checkpoint: {p} is not a checkpoint folder.")
    return p


def flat_config(cfg: dict, prefix: str = "") -> dict:
    """The nested config as one level of `section/key` scalars (what experiment trackers take)."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "/"))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = "none" if v is None else v
        else:
            out[key] = json.dumps(v)
    return out


def record_eval(result, state: TrainState, metric_name: str, accelerator, model, fe, out: Path) -> None:
    """Log a validation `result` (`EvaluationResult`) in `state.evals` and the trackers, and save `out/best` (model
    and feature extractor) when `metric_name` improved. Call it on every process: gathering the weights is
    collective under FSDP."""
    if result is None:
        return
    metrics = {k: float(v) for k, v in result.metrics.items()}
    state.evals.append({"step": state.step, **metrics})
    accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=state.step)
    value = metrics.get(metric_name)
    if value is None or not math.isfinite(value):
        return
    better = state.best_metric is None or (value < state.best_metric if metric_mode(metric_name) == "min" else value > state.best_metric)
    if better:
        state.best_metric, state.best_step = value, state.step
        weights = accelerator.get_state_dict(model)  # collective under FSDP: every process calls it
        if accelerator.is_main_process:
            accelerator.unwrap_model(model).save_pretrained(str(out / "best"), state_dict=weights)
            fe.save_pretrained(str(out / "best"))
        accelerator.wait_for_everyone()
