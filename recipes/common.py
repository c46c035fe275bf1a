"""Shared machinery of the fine-tuning recipes (`finetune_diagnosis.py`, `finetune_risk.py`,
`finetune_profiling.py`). Read top to bottom: configuration, data, model, optimisation, the training loop,
evaluation and saving.

A recipe is a `Task` (which model class, how its config follows the dataset, which metric picks the best
checkpoint, what to do after training) handed to `run(config, task)`. Everything else is here and identical for the
three tasks, so a fix lands once.

The loop is a plain Accelerate loop: the same script runs on one CPU, one GPU, several GPUs (DDP) or nodes, or FSDP,
chosen with `accelerate launch --config_file recipes/configs/accelerate_*.yaml`.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

# Make `import anyecg_hf` work when the recipes are run from a checkout without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accelerate import Accelerator  # noqa: E402
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import get_scheduler  # noqa: E402

from anyecg_hf.data import (  # noqa: E402
    ECGAugmentation,
    ECGDataCollator,
    EpochShuffleSampler,
    LabelBalancedSampler,
    dataset_metadata,
    get_label_space,
    get_risk_label_space,
    is_prepared,
    load_ecg_dataset,
    prepare_dataset,
)
from anyecg_hf.evaluation.predictions import collect_predictions, evaluate_predictions  # noqa: E402
from anyecg_hf.evaluation import write_model_card, write_report  # noqa: E402
from anyecg_hf.modeling import AnyECGConfig, AnyECGForDiagnosis, LabelSpace  # noqa: E402

logger = logging.getLogger("anyecg.recipes")

# ============================================================================================== 1. configuration
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
        "mixed_precision": "no",  # "no", "bf16", "fp16" (GPU)
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


def _merge(base: dict, update: dict, where: str = "") -> dict:
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
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | os.PathLike | None = None, overrides=(), base: dict | None = None) -> dict:
    """Defaults <- YAML file <- `section.key=value` overrides (values parsed as YAML)."""
    cfg = copy.deepcopy(base or DEFAULTS)
    if path is not None:
        with open(path) as f:
            cfg = _merge(cfg, yaml.safe_load(f) or {})
    for item in overrides or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Override {item!r} must look like section.key=value.")
        *parents, leaf = key.strip().split(".")
        patch: dict = {leaf: yaml.safe_load(value)}
        for p in reversed(parents):
            patch = {p: patch}
        cfg = _merge(cfg, patch)
    ECGAugmentation.from_dict(cfg["augmentation"])  # validate early
    if cfg["data"]["dataset"] is None:
        raise ValueError("data.dataset is required (a folder written by `anyecg build-dataset`, or a Hub dataset id).")
    return cfg


def parse_args(description: str, argv=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="YAML config (see recipes/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set training.max_steps=100 (repeatable)")
    return parser.parse_args(argv)


# ============================================================================================== 2. task
@dataclass
class Task:
    """What differs between the recipes.

    Args:
        name: `"diagnosis"`, `"risk"` or `"profiling"`.
        model_class: the head class (`AnyECGForDiagnosis`, ...).
        best_metric: metric that picks the best checkpoint (`macro_auroc`, `mean_harrell_c`, `eval_loss`, ...).
        config_updates: `(data: DataBundle, cfg) -> dict` of `AnyECGConfig` fields the dataset decides (label spaces,
            regression names and their standardisation, class weights).
        after_training: optional `(model, data, predictions_on_train, accelerator) -> None`, e.g. the Breslow baseline
            hazard of a Cox head.
        target_keys: dataset columns the collator batches.
    """

    name: str
    model_class: type
    best_metric: str
    config_updates: Callable
    after_training: Callable | None = None
    target_keys: tuple = ("labels", "label_mask")


def metric_mode(name: str) -> str:
    """Whether a larger (`"max"`) or smaller (`"min"`) value of a metric is better."""
    return "min" if any(k in name for k in ("loss", "mae", "rmse", "brier", "ibs", "ece")) else "max"


# ============================================================================================== 3. data
@dataclass
class DataBundle:
    """The splits and what the dataset says about its targets."""

    train: object
    eval: object | None
    test: object | None
    label_space: LabelSpace | None
    risk_label_space: LabelSpace | None
    regression_names: list | None
    metadata: dict = field(default_factory=dict)


def load_data(cfg: dict) -> DataBundle:
    d = cfg["data"]
    ds = load_ecg_dataset(d["dataset"])
    splits = ds if hasattr(ds, "keys") else {d["train_split"]: ds}
    if d["train_split"] not in splits:
        raise ValueError(f"{d['dataset']} has no split {d['train_split']!r} (splits: {list(splits)}).")
    train = splits[d["train_split"]]
    eval_ds = splits.get(d["eval_split"]) if d["eval_split"] else None
    test = splits.get(d["test_split"]) if d["test_split"] else None
    meta = dataset_metadata(train)
    return DataBundle(train=train, eval=eval_ds, test=test, label_space=get_label_space(train),
                      risk_label_space=get_risk_label_space(train), regression_names=meta.get("regression_names"),
                      metadata=meta)


def feature_extractor_for(model, cfg: dict):
    """The model's feature extractor (its saved one when it has one), with the config's overrides."""
    from anyecg_hf.processing import AnyECGFeatureExtractor

    overrides = dict(cfg["data"]["feature_extractor"] or {})
    pre = cfg["data"]["preprocess"]
    if pre.get("windowing"):
        overrides["windowing"] = pre["windowing"]
    if pre.get("window_stride"):
        overrides["window_stride"] = pre["window_stride"]
    return AnyECGFeatureExtractor.from_model_config(model.config, **overrides)


def prepare_splits(data: DataBundle, fe, cfg: dict, accelerator) -> DataBundle:
    """Preprocess every split once (cached by datasets); the main process writes the cache, the others read it."""
    pre = cfg["data"]["preprocess"]
    out = {}
    with accelerator.main_process_first():
        for name in ("train", "eval", "test"):
            ds = getattr(data, name)
            if ds is None or is_prepared(ds):
                out[name] = ds
                continue
            out[name] = prepare_dataset(ds, fe, storage=pre.get("storage", "float16"), num_proc=pre.get("num_proc"))
    return DataBundle(out["train"], out["eval"], out["test"], data.label_space, data.risk_label_space,
                      data.regression_names, data.metadata)


def make_dataloaders(data: DataBundle, model_config, cfg: dict, task: Task):
    t, d = cfg["training"], cfg["data"]
    aug = ECGAugmentation.from_dict({"seed": t["seed"], **cfg["augmentation"]})
    common = dict(num_samples=model_config.num_samples, num_leads=model_config.in_channels,
                  sampling_rate=model_config.sampling_rate, target_keys=task.target_keys)
    train_collator = ECGDataCollator(window=d["train_window"], augmentation=aug, train=True, **common)
    eval_collator = ECGDataCollator(window=d["eval_window"], train=False, **common)
    train = data.train.with_format("numpy")
    if d["sampler"] == "balanced":
        if "labels" not in train.column_names:
            raise ValueError("data.sampler=balanced needs diagnosis labels in the dataset.")
        sampler = LabelBalancedSampler(np.stack(train["labels"]), np.stack(train["label_mask"]), seed=t["seed"])
    elif d["sampler"] == "shuffle":
        sampler = EpochShuffleSampler(len(train), seed=t["seed"])
    else:
        raise ValueError(f"data.sampler must be 'shuffle' or 'balanced', got {d['sampler']!r}.")
    loader = dict(batch_size=t["batch_size"], num_workers=d["num_workers"], pin_memory=torch.cuda.is_available())
    train_dl = DataLoader(train, sampler=sampler, collate_fn=train_collator, drop_last=False, **loader)
    eval_dls = {}
    for name in ("eval", "test"):
        ds = getattr(data, name)
        if ds is not None:
            eval_dls[name] = DataLoader(ds.with_format("numpy"), shuffle=False, collate_fn=eval_collator, **loader)
    return train_dl, eval_dls, train_collator


def positive_weights(labels: np.ndarray, mask: np.ndarray, mode: str, max_weight: float) -> list | None:
    r"""`pos_weight` of the BCE per condition from the known training labels.

    `"balanced"`: :math:`w_j = n^-_j / n^+_j`; `"sqrt"`: its square root; clipped to `[1, max_weight]` (conditions
    without positives get `max_weight`); `"none"`: `None`.
    """
    if mode == "none":
        return None
    if mode not in ("balanced", "sqrt"):
        raise ValueError(f"training.class_weighting must be 'none', 'balanced' or 'sqrt', got {mode!r}.")
    pos = ((labels > 0.5) & mask).sum(0).astype(float)
    neg = ((labels <= 0.5) & mask).sum(0).astype(float)
    w = np.where(pos > 0, neg / np.maximum(pos, 1), max_weight)
    if mode == "sqrt":
        w = np.sqrt(w)
    return [float(x) for x in np.clip(w, 1.0, max_weight)]


# ============================================================================================== 4. model
_LABEL_KEYS = {"id2label", "label2id", "label_space", "label_space_name", "risk_label_space", "risk_label_space_name",
               "num_labels", "architectures", "diagnosis_pos_weight", "regression_names", "regression_target_mean",
               "regression_target_std", "auto_map", "_name_or_path", "transformers_version", "model_type", "dtype"}


def _config_from(source_config, updates: dict, overrides: dict) -> AnyECGConfig:
    fields_ = set(inspect.signature(AnyECGConfig.__init__).parameters) - {"self", "kwargs"}
    base = {k: v for k, v in source_config.to_dict().items() if k in fields_ and k not in _LABEL_KEYS}
    return AnyECGConfig(**{**base, **overrides, **updates})


def init_model(task: Task, cfg: dict, updates: dict):
    """The task's model with the dataset's label spaces, its backbone from the configured source.

    * `init: ecgfounder`: the original ECGFounder `.pth` (Hub repo or file), converted.
    * `init: pretrained`: a folder or Hub id of an AnyECG model (any head).
    * `init: config`: a fresh backbone from `model.config` (training from scratch, tests).

    The backbone is copied whole; head rows are copied where a condition of the new label space has the same id (or
    name) in the source head, so starting from a model with overlapping conditions keeps what it learned for them.
    """
    m = cfg["model"]
    overrides = dict(m.get("config_overrides") or {})
    if m["init"] == "config":
        config = AnyECGConfig(**{**dict(m["config"] or {}), **overrides, **updates})
        config.architectures = [task.model_class.__name__]
        return task.model_class(config), "scratch"
    if m["init"] == "ecgfounder":
        source = AnyECGForDiagnosis.from_ecgfounder(m["name_or_path"], filename=m.get("filename"),
                                                    num_leads=m.get("num_leads"), trust_checkpoint=m.get("trust_checkpoint", False))
    elif m["init"] == "pretrained":
        from transformers import AutoModel

        source = AutoModel.from_pretrained(m["name_or_path"])
    else:
        raise ValueError(f"model.init must be 'ecgfounder', 'pretrained' or 'config', got {m['init']!r}.")
    config = _config_from(source.config, updates, overrides)
    config.architectures = [task.model_class.__name__]
    model = task.model_class(config)
    backbone = source.anyecg if hasattr(source, "anyecg") else source
    model.anyecg.load_state_dict(backbone.state_dict())
    copied = _copy_matching_rows(source, model)
    model._anyecg_rows_copied = copied
    logger.info("initialised from %s (%s): backbone + %d head row(s)", m["name_or_path"], m["init"], copied)
    return model, str(m["name_or_path"])


@torch.no_grad()
def _copy_matching_rows(source, target) -> int:
    """Copy head rows whose condition (id, else name; case-insensitive) exists in the source head."""
    n = 0
    pairs = [("classifier", "label_space")]
    if getattr(getattr(source, "risk_head", None), "linear", None) is not None and type(source.risk_head) is type(getattr(target, "risk_head", None)):
        pairs.append(("risk_head.linear", "risk_label_space"))
    for attr, space_name in pairs:
        src_mod, dst_mod = _get(source, attr), _get(target, attr)
        src_space, dst_space = getattr(source.config, space_name, None), getattr(target.config, space_name, None)
        if src_mod is None or dst_mod is None or src_space is None or dst_space is None:
            continue
        if src_mod.weight.shape[1:] != dst_mod.weight.shape[1:]:
            continue
        index: dict[str, int] = {}
        for i, c in reversed(list(enumerate(src_space))):  # first occurrence wins
            index[c.name.casefold()] = i
        for i, c in reversed(list(enumerate(src_space))):
            index[c.id.casefold()] = i  # ids take precedence over names
        for row, c in enumerate(dst_space):
            j = index.get(c.id.casefold(), index.get(c.name.casefold()))
            if j is not None:
                dst_mod.weight[row].copy_(src_mod.weight[j])
                dst_mod.bias[row].copy_(src_mod.bias[j])
                n += 1
    return n


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


# ============================================================================================== 5. optimisation
def _depth(name: str, n_stages: int) -> int:
    """Depth of a parameter for layer-wise decay: stem 0, stage i -> i + 1, heads n_stages + 1."""
    if name.startswith("anyecg.stem."):
        return 0
    if name.startswith("anyecg.stages."):
        return int(name.split(".")[2]) + 1
    return n_stages + 1


def parameter_groups(model, strategy: str, lr: float, weight_decay: float, layer_decay: float = 0.75,
                     head_lr: float | None = None) -> list[dict]:
    r"""Optimizer parameter groups.

    * `"full"`: every parameter at `lr` (heads at `head_lr` when given).
    * `"linear_probe"`: the backbone is frozen (`requires_grad=False`); only the heads train.
    * `"llrd"`: layer-wise learning-rate decay, :math:`\mathrm{lr}_d = \mathrm{lr}\cdot \gamma^{D-d}` with depth
      :math:`d` (stem 0, stage :math:`i` at :math:`i+1`, heads :math:`D` = stages + 1) and :math:`\gamma` =
      `layer_decay`, so early layers, which hold the most general features, move least.

    Biases and 1-D parameters get no weight decay.
    """
    if strategy not in ("full", "linear_probe", "llrd"):
        raise ValueError(f"training.strategy must be 'full', 'linear_probe' or 'llrd', got {strategy!r}.")
    n_stages = len(model.config.filter_list)
    head_lr = lr if head_lr is None else head_lr
    groups: dict = {}
    for name, p in model.named_parameters():
        is_backbone = name.startswith("anyecg.")
        if strategy == "linear_probe" and is_backbone:
            p.requires_grad_(False)
            continue
        depth = _depth(name, n_stages)
        if strategy == "llrd":
            group_lr = lr * layer_decay ** (n_stages + 1 - depth) if is_backbone else head_lr
        else:
            group_lr = lr if is_backbone else head_lr
        decay = weight_decay if p.ndim > 1 else 0.0
        key = (group_lr, decay)
        groups.setdefault(key, {"params": [], "lr": group_lr, "weight_decay": decay})["params"].append(p)
    return list(groups.values())


# ============================================================================================== 6. training state
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


def _checkpoints(out: Path) -> list[Path]:
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("step_*") if p.is_dir()), key=lambda p: int(p.name.split("_")[1]))


def _resolve_resume(value, out: Path) -> Path | None:
    if not value:
        return None
    if value == "latest":
        found = _checkpoints(out)
        return found[-1] if found else None
    p = Path(value)
    if not p.is_dir():
        raise ValueError(f"training.resume_from_checkpoint: {p} is not a checkpoint folder.")
    return p


def _flat(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "/"))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = "none" if v is None else v
        else:
            out[key] = json.dumps(v)
    return out


# ============================================================================================== 7. the loop
def run(cfg: dict, task: Task) -> dict:
    """Train, evaluate, save (and push). Returns a summary dict (also written to `output_dir/trainer_state.json`)."""
    t = cfg["training"]
    out = Path(t["output_dir"])
    log_with = None if t["log_with"] in (None, "none") else t["log_with"]
    accelerator = Accelerator(
        mixed_precision=t["mixed_precision"],
        gradient_accumulation_steps=t["gradient_accumulation_steps"],
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    set_seed(t["seed"])
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    best_metric_name = t["best_metric"] or task.best_metric

    # ---- data, model, preprocessing
    data = load_data(cfg)
    model, source = init_model(task, cfg, task.config_updates(data, cfg))
    fe = feature_extractor_for(model, cfg)
    data = prepare_splits(data, fe, cfg, accelerator)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "run_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    train_dl, eval_dls, train_collator = make_dataloaders(data, model.config, cfg, task)

    # ---- optimisation
    groups = parameter_groups(model, t["strategy"], t["learning_rate"], t["weight_decay"], t["layer_decay"], t["head_learning_rate"])
    optimizer = torch.optim.AdamW(groups, lr=t["learning_rate"], betas=tuple(t["adam_betas"]))
    steps_per_epoch = max(1, math.ceil(len(train_dl) / t["gradient_accumulation_steps"]))  # global batches (split_batches)
    max_steps = t["max_steps"] if t["max_steps"] and t["max_steps"] > 0 else t["num_epochs"] * steps_per_epoch
    warmup = t["warmup_steps"] if t["warmup_steps"] is not None else int(round(t["warmup_ratio"] * max_steps))
    scheduler = get_scheduler(t["lr_scheduler"], optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)
    model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)
    eval_dls = {k: accelerator.prepare(v) for k, v in eval_dls.items()}
    state = TrainState()
    accelerator.register_for_checkpointing(state)

    resume = _resolve_resume(t["resume_from_checkpoint"], out)
    if resume is not None:
        accelerator.load_state(str(resume))
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", resume, state.step, state.epoch, state.batches_in_epoch)
    if log_with:
        accelerator.init_trackers(task.name, config=_flat(cfg))

    def evaluate(split: str = "eval", n_bootstrap: int = 0):
        if split not in eval_dls:
            return None
        preds = collect_predictions(model, eval_dls[split], accelerator)
        ds = data.eval if split == "eval" else data.test
        patients = list(ds["patient_id"]) if "patient_id" in ds.column_names else None
        return evaluate_predictions(preds, accelerator.unwrap_model(model).config, data.label_space, data.risk_label_space,
                                    data.regression_names, patient_ids=patients, n_bootstrap=n_bootstrap,
                                    seed=cfg["evaluation"]["seed"])

    def save_checkpoint():
        folder = out / "checkpoints" / f"step_{state.step}"
        accelerator.save_state(str(folder))
        if accelerator.is_main_process:
            for old in _checkpoints(out)[: -max(1, t["keep_checkpoints"])]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    # ---- train
    model.train()
    if t["strategy"] == "linear_probe":
        accelerator.unwrap_model(model).anyecg.eval()  # frozen backbone: no dropout, fixed batch-norm statistics
    bar = tqdm(total=max_steps, initial=state.step, desc=f"finetune {task.name}",
               disable=not (t["progress_bar"] and accelerator.is_local_main_process))
    running, n_running = 0.0, 0
    stopped = False
    local_batch = 0  # records per process in a batch (batch_size / num_processes)
    while state.step < max_steps and not stopped:
        train_dl.set_epoch(state.epoch)
        train_collator.set_epoch(state.epoch)
        loader = accelerator.skip_first_batches(train_dl, state.batches_in_epoch) if state.batches_in_epoch else train_dl
        for batch in loader:
            local_batch = local_batch or int(batch["input_values"].shape[0])
            with accelerator.accumulate(model):
                outputs = model(**batch)
                loss = outputs.loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and t["max_grad_norm"]:
                    accelerator.clip_grad_norm_(model.parameters(), t["max_grad_norm"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state.batches_in_epoch += 1
            running += float(accelerator.reduce(loss.detach().float(), reduction="mean"))
            n_running += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            bar.update(1)
            if state.step % t["log_every"] == 0 or state.step == max_steps:
                entry = {"step": state.step, "loss": running / n_running, "lr": scheduler.get_last_lr()[0]}
                state.history.append(entry)
                accelerator.log({"train/loss": entry["loss"], "train/lr": entry["lr"]}, step=state.step)
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
                running, n_running = 0.0, 0
            if t["eval_every"] and state.step % t["eval_every"] == 0:
                _periodic_eval(evaluate, state, best_metric_name, accelerator, model, fe, out, cfg, data)
            if t["save_every"] and state.step % t["save_every"] == 0:
                save_checkpoint()
            if t["stop_after_steps"] and state.step >= t["stop_after_steps"]:
                if not (t["save_every"] and state.step % t["save_every"] == 0):
                    save_checkpoint()
                stopped = True
                break
            if state.step >= max_steps:
                break
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
    bar.close()
    if stopped:
        accelerator.end_training()
        logger.info("stopped after step %d (stop_after_steps); resume with training.resume_from_checkpoint=latest", state.step)
        return {"status": "stopped", "step": state.step, "output_dir": str(out)}

    # ---- finish: pick the model, post-process, final evaluation, save, push
    if t["eval_every"] and (not state.evals or state.evals[-1]["step"] != state.step):
        _periodic_eval(evaluate, state, best_metric_name, accelerator, model, fe, out, cfg, data)
    unwrapped = accelerator.unwrap_model(model)
    if t["final_model"] == "best" and state.best_step is not None and (out / "best" / "model.safetensors").exists():
        from safetensors.torch import load_file

        unwrapped.load_state_dict(load_file(str(out / "best" / "model.safetensors")), strict=False)
    if task.after_training is not None:
        task.after_training(unwrapped, model, data, cfg, accelerator)
    final_split = "test" if "test" in eval_dls else "eval"
    result = evaluate(final_split, n_bootstrap=cfg["evaluation"]["n_bootstrap"])
    final = out / "final"
    weights = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        save_model(unwrapped, fe, final, cfg, task, result, split=final_split, source=source, state=state, weights=weights)
    accelerator.wait_for_everyone()
    summary = {
        "status": "done", "step": state.step, "num_processes": accelerator.num_processes, "local_batch_size": local_batch,
        "output_dir": str(out),
        "final_model": str(final),
        "best_metric": best_metric_name, "best_value": state.best_metric, "best_step": state.best_step,
        "final_split": final_split, "final_metrics": {} if result is None else result.metrics,
        "history": state.history, "evals": state.evals,
    }
    if accelerator.is_main_process:
        (out / "trainer_state.json").write_text(json.dumps(summary, indent=1, default=float))
        if cfg["hub"]["push_to_hub"]:
            push_to_hub(final, cfg["hub"])
    accelerator.end_training()
    return summary


def _periodic_eval(evaluate, state, metric_name, accelerator, model, fe, out, cfg, data):
    result = evaluate("eval")
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


def predictions_on_train(prepared_model, data: DataBundle, cfg: dict, accelerator, task: Task) -> dict:
    """Predictions of the (prepared) model on the training split without augmentation, gathered from every
    process (e.g. for a Cox baseline hazard)."""
    model_config = accelerator.unwrap_model(prepared_model).config
    collator = ECGDataCollator(num_samples=model_config.num_samples, num_leads=model_config.in_channels,
                               sampling_rate=model_config.sampling_rate, window=cfg["data"]["eval_window"], train=False,
                               target_keys=task.target_keys)
    dl = DataLoader(data.train.with_format("numpy"), batch_size=cfg["training"]["batch_size"], shuffle=False,
                    collate_fn=collator, num_workers=cfg["data"]["num_workers"])
    return collect_predictions(prepared_model, accelerator.prepare(dl), accelerator, compute_loss=False)


# ============================================================================================== 8. saving
def save_model(model, fe, folder: Path, cfg: dict, task: Task, result, split: str, source: str, state: TrainState,
               weights: dict | None = None) -> None:
    """Write a complete model folder: weights, config, feature extractor, label spaces, evaluation report, model
    card (README.md) and the training config. `pipeline(model=folder)` and `AutoModel.from_pretrained` load it.

    `weights` is the full state dict (`accelerator.get_state_dict`, gathered under FSDP); default the model's own."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), state_dict=weights)
    fe.save_pretrained(str(folder))
    model.config.label_space.save(str(folder / "label_space.csv"))
    if getattr(model.config, "risk_label_space", None) is not None:
        model.config.risk_label_space.save(str(folder / "risk_label_space.csv"))
    (folder / "training_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    diag = None if result is None else result.diagnosis_report
    risk = None if result is None else result.risk_report
    dataset_name = f"{cfg['data']['dataset']} [{split}]"
    if diag is not None or risk is not None:
        write_report(folder / "evaluation", diagnosis_report=diag, risk_report=risk, dataset_name=dataset_name)
    if result is not None and result.regression_table is not None and len(result.regression_table):
        (folder / "evaluation").mkdir(exist_ok=True)
        result.regression_table.to_csv(folder / "evaluation" / "regression.csv", index=False)
    t = cfg["training"]
    training = (
        f"Fine-tuned with `recipes/finetune_{task.name}.py` from `{source}`: {state.step} optimizer steps, strategy "
        f"`{t['strategy']}`, learning rate {t['learning_rate']:g} ({t['lr_scheduler']} schedule), global batch "
        f"{t['batch_size']} x {t['gradient_accumulation_steps']} accumulation, seed {t['seed']}, class weighting "
        f"`{t['class_weighting']}`, augmentations {json.dumps(cfg['augmentation']) if cfg['augmentation'] else 'none'}. "
        f"Dataset: `{cfg['data']['dataset']}`. The full configuration is in `training_config.yaml`."
    )
    base = source if source not in ("scratch",) and not os.path.exists(str(source)) else None
    name = cfg["hub"].get("repo_id") or f"anyecg-{task.name}-{Path(t['output_dir']).name}"
    write_model_card(folder, config=model.config, diagnosis_report=diag, risk_report=risk, base_model=base,
                     model_name=name, training_data=training, dataset_name=dataset_name, overwrite=True)


def push_to_hub(folder: Path, hub: dict) -> str:
    """Upload the final folder (model, feature extractor, label spaces, model card, evaluation) to the Hub."""
    from huggingface_hub import HfApi

    if not hub.get("repo_id"):
        raise ValueError("hub.repo_id is required to push to the Hub.")
    api = HfApi(token=hub.get("token"))
    api.create_repo(hub["repo_id"], private=hub.get("private", True), exist_ok=True)
    api.upload_folder(repo_id=hub["repo_id"], folder_path=str(folder), commit_message="AnyECG fine-tuned model")
    logger.info("pushed %s to %s", folder, hub["repo_id"])
    return hub["repo_id"]


def main(task: Task, description: str, argv=None) -> dict:
    args = parse_args(description, argv)
    cfg = load_config(args.config, args.overrides)
    start = time.time()
    summary = run(cfg, task)
    logger.info("%s finished in %.1f s: %s", task.name, time.time() - start,
                {k: v for k, v in summary.items() if k not in ("history", "evals")})
    return summary
