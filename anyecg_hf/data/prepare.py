"""Turn a built ECG dataset into model inputs once, with `Dataset.map(batched=True, num_proc=...)`.

The feature extractor (resampling, notch, band-pass, running-median baseline, z-score) costs far more than a
training step of a small model, so it runs once per record and `datasets` caches the result beside the dataset's
Arrow files (re-running `prepare_dataset` with the same dataset and extractor settings reuses it).

Each prepared row holds every window the extractor cut from the record (`windowing="sliding"` keeps several, so the
collator can draw a random one for augmentation; `"first"` / `"center"` keep one):

| column | type | meaning |
| --- | --- | --- |
| `input_values` | list of float16/float32 | `(num_windows, leads, num_samples)` flattened |
| `lead_mask` | list of bool | recorded leads in the model's lead order |
| `num_windows` | int32 | windows stored |
| `window_valid` | list of int32 | real (unpadded) samples of each window |
"""

from __future__ import annotations

import logging

import numpy as np
from datasets import Dataset, DatasetDict, List, Value

from .metadata import dataset_metadata, set_dataset_metadata
from .storage import decode_signal

logger = logging.getLogger(__name__)

RAW_COLUMNS = ("signal", "gain")


def _prepare_batch(batch: dict, feature_extractor, storage: str) -> dict:
    """`map` function: raw rows -> windows of model input (a failed record keeps an `_error` and no input).

    The whole batch goes through the extractor in one call (it vectorises over windows of equal length); if that
    fails, records are retried one by one so that only the bad ones are dropped."""
    n = len(batch["signal"])
    n_leads = len(feature_extractor.lead_names)
    signals = [decode_signal(batch["signal"][i], batch["gain"][i]) for i in range(n)]
    ids = [str(r) for r in batch["record_id"]] if "record_id" in batch else [f"record {i}" for i in range(n)]
    rates = [float(r) for r in batch["sampling_rate"]]
    names = [list(ln) for ln in batch["lead_names"]]
    results: list = [None] * n
    try:
        fe = feature_extractor(signals, sampling_rate=rates, lead_names=names, return_tensors="np",
                               return_window_index=True, record_ids=ids)
        owner = np.asarray(fe["window_to_record"])
        for i in range(n):
            sel = owner == i
            results[i] = (fe["input_values"][sel], fe["lead_mask"][sel][0], fe["sample_mask"][sel])
    except Exception:  # noqa: BLE001 - find the bad record(s)
        for i in range(n):
            try:
                fe = feature_extractor(signals[i], sampling_rate=rates[i], lead_names=names[i], return_tensors="np",
                                       record_ids=[ids[i]])
                results[i] = (fe["input_values"], fe["lead_mask"][0], fe["sample_mask"])
            except Exception as err:  # noqa: BLE001 - reported and removed by prepare_dataset
                results[i] = f"{type(err).__name__}: {err}"
    out = {"input_values": [], "lead_mask": [], "num_windows": [], "window_valid": [], "_error": []}
    for res in results:
        if isinstance(res, str):
            out["input_values"].append(np.zeros(0, storage))
            out["lead_mask"].append(np.zeros(n_leads, bool))
            out["num_windows"].append(0)
            out["window_valid"].append(np.zeros(0, np.int32))
            out["_error"].append(res)
            continue
        x, mask, smask = res
        out["input_values"].append(np.asarray(x, dtype=np.float32).astype(storage).reshape(-1))
        out["lead_mask"].append(np.asarray(mask, dtype=bool))
        out["num_windows"].append(int(x.shape[0]))
        out["window_valid"].append(np.asarray(smask).sum(axis=1).astype(np.int32))
        out["_error"].append("")
    return out


def prepare_dataset(ds, feature_extractor, *, windowing: str | None = None, window_stride: int | None = None,
                    storage: str = "float16", keep_raw: bool = False, num_proc: int | None = None,
                    batch_size: int = 32, load_from_cache_file: bool = True, return_report: bool = False):
    """Run the feature extractor over every record (`map(batched=True)`, cached) and store the model inputs.

    Args:
        ds: a built `Dataset` or `DatasetDict` (`build_ecg_dataset`).
        feature_extractor: an `AnyECGFeatureExtractor` (e.g. `AnyECGFeatureExtractor.from_pretrained(model)`).
        windowing (`str`, *optional*): override the extractor's `windowing` (`"first"`, `"center"`, `"sliding"`);
            `"sliding"` stores every window (random-crop augmentation picks one; evaluation can use them all).
        window_stride (`int`, *optional*): sliding stride in samples (default: the window length).
        storage (`str`): `"float16"` (default, half the size; inputs are z-scores so the rounding is below 1e-3)
            or `"float32"`.
        keep_raw (`bool`): keep `signal` / `gain` (default: dropped, the prepared data need them no more).
        num_proc (`int`, *optional*): processes for `map`.
        batch_size (`int`): records per `map` batch.
        load_from_cache_file (`bool`): reuse a cached result (datasets' fingerprinting).
        return_report (`bool`): also return `{split: [{"record_id", "reason"}, ...]}` of records the extractor
            rejected (no usable lead, too short to filter, ...); they are removed and logged.

    Returns:
        The prepared dataset (same type as `ds`); its metadata records the extractor settings.
    """
    if storage not in ("float16", "float32"):
        raise ValueError(f"storage must be 'float16' or 'float32', got {storage!r}.")
    fe = feature_extractor
    if windowing is not None or window_stride is not None:
        params = fe.to_dict()
        params.pop("feature_extractor_type", None)
        params.pop("processor_class", None)
        if windowing is not None:
            params["windowing"] = windowing
        if window_stride is not None:
            params["window_stride"] = int(window_stride)
        fe = type(fe)(**params)
    if isinstance(ds, DatasetDict):
        parts, reports = {}, {}
        for name, part in ds.items():
            parts[name], reports[name] = prepare_dataset(part, fe, storage=storage, keep_raw=keep_raw, num_proc=num_proc,
                                                         batch_size=batch_size, load_from_cache_file=load_from_cache_file,
                                                         return_report=True)
        out = DatasetDict(parts)
        return (out, reports) if return_report else out
    if not isinstance(ds, Dataset):
        raise TypeError(f"prepare_dataset takes a Dataset or DatasetDict, got {type(ds).__name__} (for an "
                        "IterableDataset, pass feature_extractor= to ECGDataCollator instead).")
    missing = [c for c in ("signal", "gain", "sampling_rate", "lead_names") if c not in ds.column_names]
    if missing:
        raise ValueError(f"the dataset lacks raw signal column(s) {missing}: is it already prepared?")
    features = ds.features.copy()
    features["input_values"] = List(Value(storage))
    features["lead_mask"] = List(Value("bool"))
    features["num_windows"] = Value("int32")
    features["window_valid"] = List(Value("int32"))
    features["_error"] = Value("string")
    meta = dataset_metadata(ds)
    num_proc = None if not num_proc or num_proc <= 1 else int(num_proc)
    mapped = ds.map(_prepare_batch, batched=True, batch_size=batch_size, num_proc=num_proc, features=features,
                    fn_kwargs={"feature_extractor": fe, "storage": storage}, load_from_cache_file=load_from_cache_file,
                    desc="preprocessing ECGs")
    errors = list(mapped["_error"])
    report = []
    if any(errors):
        ids = list(mapped["record_id"])
        report = [{"record_id": ids[i], "reason": e} for i, e in enumerate(errors) if e]
        for r in report:
            logger.warning("preprocessing skipped record %s: %s", r["record_id"], r["reason"])
        mapped = mapped.select([i for i, e in enumerate(errors) if not e]).flatten_indices()
    mapped = mapped.remove_columns(["_error"] + ([] if keep_raw else list(RAW_COLUMNS)))
    fe_dict = fe.to_dict()
    mapped = set_dataset_metadata(mapped, **{**meta, "prepared": {"feature_extractor": fe_dict, "storage": storage,
                                                                    "skipped": report}})
    return (mapped, report) if return_report else mapped


def is_prepared(ds) -> bool:
    """Whether a dataset holds model inputs (`prepare_dataset`) rather than raw signals."""
    names = ds.column_names if not isinstance(ds, DatasetDict) else next(iter(ds.values())).column_names
    return names is not None and "input_values" in names
