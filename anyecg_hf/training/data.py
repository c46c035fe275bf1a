"""The recipes' data: the dataset's splits and what it says about its targets, preprocessing once per split, the
dataloaders (training sampler and augmentations; evaluation windows), and class weights from the training labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import (
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
from ..ehr.dataset import condition_index
from ..modeling import LabelSpace
from ..processing import AnyECGFeatureExtractor

__all__ = ["DataBundle", "feature_extractor_for", "load_data", "make_dataloaders", "positive_weights",
           "positive_weights_from_counts", "prepare_splits"]


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


def make_dataloaders(data: DataBundle, model_config, cfg: dict, target_keys):
    t, d = cfg["training"], cfg["data"]
    aug = ECGAugmentation.from_dict({"seed": t["seed"], **cfg["augmentation"]})
    common = dict(num_samples=model_config.num_samples, num_leads=model_config.in_channels,
                  sampling_rate=model_config.sampling_rate, target_keys=tuple(target_keys),
                  ehr_index=condition_index(data.train))  # EHR targets (anyecg build-targets): expanded per batch
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
    return positive_weights_from_counts(pos, neg, mode, max_weight)


def positive_weights_from_counts(pos, neg, mode: str, max_weight: float) -> list | None:
    """`positive_weights` from per-condition counts of known positives and negatives (EHR datasets count them by
    expanding in chunks: `anyecg_hf.ehr.dataset.label_counts`)."""
    if mode == "none":
        return None
    if mode not in ("balanced", "sqrt"):
        raise ValueError(f"training.class_weighting must be 'none', 'balanced' or 'sqrt', got {mode!r}.")
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    w = np.where(pos > 0, neg / np.maximum(pos, 1), max_weight)
    if mode == "sqrt":
        w = np.sqrt(w)
    return [float(x) for x in np.clip(w, 1.0, max_weight)]
