"""A dataset's own metadata (label spaces, storage, build report) in `dataset.info.description` (JSON, kept by `map`,
`filter`, `save_to_disk`), and decoding its stored signals."""

from __future__ import annotations

import json

import numpy as np
from datasets import DatasetDict, DatasetInfo

from ..modeling.label_space import LabelSpace
from .storage import decode_signal

METADATA_FILE = "anyecg_dataset.json"  # beside saved data (Arrow folders, Parquet shards)


def with_metadata(ds, meta: dict):
    """Store `meta` in `ds.info.description` (JSON under the key `anyecg_dataset`)."""
    info = ds.info.copy() if hasattr(ds.info, "copy") else DatasetInfo()
    info.description = json.dumps({"anyecg_dataset": meta})
    ds._info = info
    return ds


def dataset_metadata(ds) -> dict:
    """The AnyECG metadata of a built dataset (label spaces, storage, build report, preprocessing)."""
    if isinstance(ds, (DatasetDict, dict)):
        ds = next(iter(ds.values()))
    text = getattr(getattr(ds, "info", None), "description", "") or ""
    try:
        return json.loads(text).get("anyecg_dataset", {})
    except (json.JSONDecodeError, AttributeError):
        return {}


def set_dataset_metadata(ds, **updates):
    """A dataset (or every split of a `DatasetDict`) with its AnyECG metadata updated."""
    if isinstance(ds, DatasetDict):
        return DatasetDict({k: set_dataset_metadata(v, **updates) for k, v in ds.items()})
    meta = dict(dataset_metadata(ds))
    meta.update(updates)
    return with_metadata(ds, meta)


def get_label_space(ds) -> LabelSpace | None:
    """The diagnosis label space the dataset's `labels` columns follow."""
    meta = dataset_metadata(ds)
    rows = meta.get("label_space")
    return None if rows is None else LabelSpace(rows, name=meta.get("label_space_name"))


def get_risk_label_space(ds) -> LabelSpace | None:
    """The risk label space of `event_times` / `events` / `at_risk_mask`."""
    meta = dataset_metadata(ds)
    rows = meta.get("risk_label_space")
    return None if rows is None else LabelSpace(rows, name=meta.get("risk_label_space_name"))


def decode_example(example: dict) -> np.ndarray:
    """The `(leads, samples)` float32 mV signal of one built row."""
    return decode_signal(example["signal"], example["gain"])
