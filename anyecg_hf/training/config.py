"""The recipes' configuration: the schema with its defaults (`DEFAULTS`), a YAML file and `--set section.key=value`
overrides merged on top, with unknown keys refused (a typo in a YAML file is an error, not a silently ignored
setting)."""

from __future__ import annotations

import argparse
import copy
import os

import yaml

from ..data import ECGAugmentation

__all__ = ["DEFAULTS", "load_config", "merge_config", "parse_args"]

DEFAULTS: dict = {
    "model": {
        "init": "ecgfounder",  # "ecgfounder" (original .pth, file or Hub repo), "pretrained" (our folder / Hub id), "config"
        "name_or_path": "PKUDigitalHealth/ECGFounder",
        "filename": None,  # ECGFounder checkpoint name (default by num_leads)
        "num_leads": 12,
        "config": {},  # init="config": AnyECGConfig fields of a fresh backbone (tests, from-scratch training)
        "config_overrides": {},  # fields changed on top of the source config (classifier_dropout, risk_head_type, ...)
        "trust_checkpoint": False,
    },
    "data": {
        "dataset": None,  # folder written by `anyecg build-dataset` / save_ecg_dataset (Arrow or Parquet), or Hub id
        "train_split": "train",
        "eval_split": "validation",
        "test_split": "test",  # final evaluation; falls back to eval_split when absent
        "preprocess": {"windowing": "first", "window_stride": None, "storage": "float16", "num_proc": None},
        "feature_extractor": {},  # AnyECGFeatureExtractor overrides (e.g. backend, notch_freq: 60)
        "train_window": "start",  # which stored window to train on ("random" = random crop among them)
        "eval_window": "all",  # average the predictions of every stored window
        "sampler": "shuffle",  # "shuffle" or "balanced" (rare conditions up-weighted, LabelBalancedSampler)
        "num_workers": 0,
    },
    "training": {
        "output_dir": "runs/anyecg",
        "seed": 42,
        "strategy": "full",  # "full", "linear_probe" (frozen backbone), "llrd" (layer-wise learning-rate decay)
        "layer_decay": 0.75,
        "learning_rate": 1.0e-4,
        "head_learning_rate": None,  # default: learning_rate
        "weight_decay": 0.01,
        "adam_betas": [0.9, 0.999],
        "batch_size": 32,  # GLOBAL batch (split over processes: split_batches=True)
        "gradient_accumulation_steps": 1,
        "max_steps": 1000,  # optimizer steps; <= 0 uses num_epochs
        "num_epochs": 10,
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.05,
        "warmup_steps": None,
        "max_grad_norm": 1.0,
        "mixed_precision": "no",  # "no", "bf16", "fp16", "auto" (bf16 where native: runtime.precision)
        "class_weighting": "none",  # "none", "balanced" (pos_weight = n_neg / n_pos) or "sqrt"
        "max_pos_weight": 100.0,
        "log_every": 10,
        "eval_every": 200,
        "save_every": 200,
        "keep_checkpoints": 2,
        "best_metric": None,  # default: the task's
        "final_model": "best",  # "best" (by best_metric) or "last"
        "resume_from_checkpoint": None,  # a checkpoint folder, or "latest" (in output_dir/checkpoints)
        "stop_after_steps": None,  # save a checkpoint and stop after this many steps (pre-emption drills, tests)
        "log_with": "tensorboard",  # "tensorboard", "none" or any accelerate tracker name
        "progress_bar": True,
    },
    "augmentation": {},  # ECGAugmentation fields; every augmentation is off unless set here
    "evaluation": {"n_bootstrap": 200, "seed": 0},
    "hub": {"push_to_hub": False, "repo_id": None, "private": True, "token": None},
}


_FREE_FORM = ("config", "config_overrides", "feature_extractor", "augmentation")  # mappings without fixed keys


def merge_config(base: dict, update: dict, where: str = "") -> dict:
    """`base` updated with `update`; a key that `base` does not have is an error (catches typos in YAML files)."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if key not in out:
            raise ValueError(f"Unknown config key {where}{key!r}; known: {sorted(out)}.")
        if key in _FREE_FORM:  # merged key by key, so --set augmentation.gaussian_noise=0.1 keeps the other settings
            out[key] = {**(out[key] or {}), **dict(value or {})}
        elif isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"Config key {where}{key} must be a mapping, got {value!r}.")
            out[key] = merge_config(out[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | os.PathLike | None = None, overrides=(), base: dict | None = None) -> dict:
    """Defaults <- YAML file <- `section.key=value` overrides (values parsed as YAML)."""
    cfg = copy.deepcopy(base or DEFAULTS)
    if path is not None:
        with open(path) as f:
            cfg = merge_config(cfg, yaml.safe_load(f) or {})
    for item in overrides or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Override {item!r} must look like section.key=value.")
        *parents, leaf = key.strip().split(".")
        patch: dict = {leaf: yaml.safe_load(value)}
        for p in reversed(parents):
            patch = {p: patch}
        cfg = merge_config(cfg, patch)
    ECGAugmentation.from_dict(cfg["augmentation"])  # validate early
    if cfg["data"]["dataset"] is None:
        raise ValueError("data.dataset is required (a folder written by `anyecg build-dataset`, or a Hub dataset id).")
    return cfg


def parse_args(description: str, argv=None):
    """`--config FILE` and repeatable `--set section.key=value` overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="YAML config (see recipes/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set training.max_steps=100 (repeatable)")
    return parser.parse_args(argv)
