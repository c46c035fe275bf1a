"""Saving and loading built datasets: Arrow folders or Parquet shards (with the metadata file beside them), local
or from a Hub dataset repo."""

from __future__ import annotations

import json
import math
from pathlib import Path

from datasets import DatasetDict, load_dataset, load_from_disk

from .metadata import METADATA_FILE, dataset_metadata, with_metadata


def save_ecg_dataset(ds, out, format: str = "arrow", num_shards: int | None = None, max_shard_size: str | int = "500MB"):
    """Write a built dataset.

    Args:
        ds: `Dataset` or `DatasetDict`.
        out: output folder.
        format (`str`): `"arrow"` (`save_to_disk`; reload with `load_ecg_dataset` or `datasets.load_from_disk`) or
            `"parquet"` (shards `data/<split>-00000-of-000NN.parquet`, the Hub's layout: `load_ecg_dataset(out,
            streaming=True)` or `datasets.load_dataset("parquet", ...)` read them lazily).
        num_shards (`int`, *optional*): Parquet/Arrow shards per split (default: from `max_shard_size`).
        max_shard_size: largest shard (Arrow format and the Parquet default).
    Writes `anyecg_dataset.json` (label spaces, storage, build report) beside the data.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dataset_metadata(ds)
    if format == "arrow":
        kwargs = {"num_shards": num_shards} if num_shards else {"max_shard_size": max_shard_size}
        if isinstance(ds, DatasetDict):
            kwargs = {"num_shards": {k: num_shards for k in ds}} if num_shards else {"max_shard_size": max_shard_size}
        ds.save_to_disk(str(out), **kwargs)
    elif format == "parquet":
        parts = ds if isinstance(ds, DatasetDict) else {"train": ds}
        (out / "data").mkdir(exist_ok=True)
        for name, part in parts.items():
            n = num_shards or max(1, math.ceil(part.data.nbytes / _parse_size(max_shard_size)))
            n = min(n, max(1, len(part)))
            for i in range(n):
                part.shard(n, i, contiguous=True).to_parquet(str(out / "data" / f"{name}-{i:05d}-of-{n:05d}.parquet"))
        meta = dict(meta, splits=list(parts))
    else:
        raise ValueError(f"format must be 'arrow' or 'parquet', got {format!r}.")
    (out / METADATA_FILE).write_text(json.dumps({"anyecg_dataset": dict(meta, format=format)}, indent=1))
    return out


def _parse_size(size) -> int:
    if isinstance(size, int):
        return size
    text = str(size).strip().upper()
    for unit, mult in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * mult)
    return int(text)


def load_ecg_dataset(path, split: str | None = None, streaming: bool = False, cache_dir=None):
    """Load a dataset written by `save_ecg_dataset` (Arrow folder or Parquet shards) or a Hub dataset repo of
    Parquet shards, with its AnyECG metadata restored.

    Args:
        path: local folder, or a Hub dataset repo id.
        split (`str`, *optional*): one split (a `Dataset`); default all (a `DatasetDict` for split data).
        streaming (`bool`): return an `IterableDataset` (Parquet is read lazily, row group by row group; Arrow folders
            are memory-mapped and converted with `to_iterable_dataset`).
    """
    p = Path(path)
    meta = {}
    if p.is_dir():
        if (p / METADATA_FILE).exists():
            meta = json.loads((p / METADATA_FILE).read_text()).get("anyecg_dataset", {})
        if (p / "dataset_dict.json").exists() or (p / "state.json").exists():
            ds = load_from_disk(str(p))
            if split is not None:
                if not isinstance(ds, DatasetDict) or split not in ds:
                    raise ValueError(f"{path} has no split {split!r} (splits: {list(ds) if isinstance(ds, DatasetDict) else ['<single>']}).")
                ds = ds[split]
            if streaming:
                ds = (DatasetDict({k: v.to_iterable_dataset() for k, v in ds.items()}) if isinstance(ds, DatasetDict)
                      else ds.to_iterable_dataset())
        else:
            shards = sorted((p / "data").glob("*.parquet")) or sorted(p.glob("*.parquet"))
            if not shards:
                raise FileNotFoundError(f"{path} holds neither a saved dataset nor Parquet shards.")
            by_split: dict[str, list[str]] = {}
            for s in shards:
                name = s.name.split("-")[0] if "-of-" in s.name else "train"
                by_split.setdefault(name, []).append(str(s))
            ds = load_dataset("parquet", data_files=by_split, split=split, streaming=streaming,
                              cache_dir=None if cache_dir is None else str(cache_dir))
    else:
        ds = load_dataset(str(path), split=split, streaming=streaming, cache_dir=None if cache_dir is None else str(cache_dir))
        try:
            from huggingface_hub import hf_hub_download

            meta = json.loads(Path(hf_hub_download(str(path), METADATA_FILE, repo_type="dataset")).read_text()).get("anyecg_dataset", {})
        except Exception:  # noqa: BLE001 - a plain Hub dataset without our metadata
            meta = {}
    if meta:
        meta.pop("format", None)
        meta.pop("splits", None)
        if isinstance(ds, (DatasetDict, dict)) or type(ds).__name__ == "IterableDatasetDict":
            for v in ds.values():
                with_metadata(v, {**dataset_metadata(v), **meta} if dataset_metadata(v) else meta)
        else:
            with_metadata(ds, {**dataset_metadata(ds), **meta} if dataset_metadata(ds) else meta)
    return ds
