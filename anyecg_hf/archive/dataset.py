"""Reading + preprocessing in DataLoader worker processes, so that files are read while the model runs.

`ECGFileDataset[i]` reads one input with `anyecg_hf.io.read_ecg` and preprocesses it with the prediction core
(`anyecg_hf.prediction.prepare_records`); a file that cannot be read or preprocessed becomes an error item (path,
error class, message) instead of an exception, so one bad file never stops a job. `collate_items` stacks the windows of a batch
of records for one forward pass and keeps `window_to_record` apart (it is bookkeeping, never a model input).
"""

from __future__ import annotations

import json
import os
import warnings as _warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from ..prediction import MODEL_INPUT_KEYS, caught_messages, prepare_records


class StringTable:
    """An immutable list of strings in two NumPy arrays (UTF-8 bytes + offsets), built from Python strings or
    (without copying) from an Arrow string array.

    DataLoader workers are forked: a Python list of millions of `str` would be copied page by page into every
    worker as reference counts change; two flat arrays are shared for free.
    """

    def __init__(self, strings):
        try:
            import pyarrow as pa
        except ImportError:  # pragma: no cover
            pa = None
        if pa is not None and isinstance(strings, (pa.Array, pa.ChunkedArray)):
            arr = strings.combine_chunks() if isinstance(strings, pa.ChunkedArray) else strings
            arr = arr.cast(pa.large_binary())  # strings, or the plan's os.fsencode()d paths (any bytes)
            if arr.null_count:
                raise ValueError("paths must not be null")
            _, offsets, data = arr.buffers()
            self._offsets = np.frombuffer(offsets, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1].copy()
            self._data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
            return
        encoded = [s.encode("utf-8", "surrogateescape") for s in strings]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._data = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        a, b = self._offsets[i], self._offsets[i + 1]
        return self._data[a:b].tobytes().decode("utf-8", "surrogateescape")

    def __iter__(self):
        return (self[i] for i in range(len(self)))


@dataclass
class Item:
    """One input after reading + preprocessing (or its failure).

    Attributes:
        index (`int`): position of the input in the job's input list.
        path (`str`): the input.
        record_id (`str`): the reader's record id (file stem when unreadable).
        inputs (`dict[str, np.ndarray]`): model inputs, `(n_windows, ...)` each; empty for an error.
        meta (`dict`): `sampling_rate`, `duration_s`, `n_leads`, `n_windows`, `warnings` (list of str).
        error (`tuple[str, str]`, *optional*): `(error class, message)` when the input failed.
    """

    index: int
    path: str
    record_id: str
    inputs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    error: tuple | None = None


def _record_id(path: str) -> str:
    name = os.path.basename(path)
    stem, _ = os.path.splitext(name)
    return stem or name


class ECGFileDataset(Dataset):
    """Map-style dataset over a job's inputs: item `i` is the read + preprocessed input `paths[i]`.

    Args:
        paths (`Sequence[str]` or `StringTable`): the inputs this process handles.
        feature_extractor (`AnyECGFeatureExtractor`): the model's preprocessing.
        indices (`Sequence[int]`, *optional*): global input positions of `paths` (default `0..n-1`).
        read_kwargs (`dict`, *optional*): passed to `read_ecg` (`format`, `sampling_rate`, `lead_names`, `units`).
        quality (`bool`, defaults to `True`): add signal-quality flags (flat, NaN-filled, clipped, noisy leads,
            limb-lead reversal) to each item's warnings.
        gate (`multiprocessing.Event`, *optional*): when given, a batch is read and preprocessed `GATE_GROUP`
            records at a time, and each stage (reading, preprocessing, quality flags) of a group starts only once the
            gate is set. A job whose readers share the cores with the model clears it for the forward pass: the
            readers then use the cores while the model waits and pause within ~3 ms when it starts, instead of
            stalling its threads at every layer.
    """

    # Records per group with a gate: 4 costs no throughput against 64 at a time (8 records per feature-extractor
    # call or more are equally fast, 2 are 7 % slower); a group checks the gate three times (~3 ms apart).
    GATE_GROUP = 4

    def __init__(self, paths, feature_extractor, indices=None, read_kwargs=None, quality: bool = True, gate=None,
                 raw: bool = False):
        self.paths = paths if isinstance(paths, StringTable) else StringTable(paths)
        self.indices = np.arange(len(self.paths), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) != len(self.paths):
            raise ValueError(f"{len(self.indices)} indices for {len(self.paths)} paths")
        self.feature_extractor = feature_extractor
        self.read_kwargs = dict(read_kwargs or {})
        self.quality = quality
        self.gate = gate
        self.raw = raw  # GPU jobs: read + lead selection only; the rest runs on the device (device_preprocessing)
        self.parent_pid = None  # set in each reader process (`cpu.worker_init`): who clears and sets the gate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Item:
        return self.__getitems__([i])[0]

    def __getitems__(self, positions) -> list:
        """Read the inputs at `positions` and preprocess the readable ones in ONE feature-extractor call (the
        extractor is vectorised over records: several times faster than one call per record), or one call per
        `GATE_GROUP` records with a `gate`. If a call fails, its records are preprocessed one by one so that only
        the bad one becomes an error item."""
        if self.gate is None:
            return self._read_and_preprocess(positions)
        items = []
        for a in range(0, len(positions), self.GATE_GROUP):
            items += self._read_and_preprocess(positions[a:a + self.GATE_GROUP])
        return items

    def _wait_for_gate(self) -> None:
        if self.gate is None:
            return
        # a reader whose job was killed while the gate was closed must not wait forever: look every second
        while not self.gate.wait(1.0):
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                raise RuntimeError("the job's process exited while this reader waited for it")

    def _read_and_preprocess(self, positions) -> list:
        items, records = [], []
        self._wait_for_gate()
        for i in positions:
            path = self.paths[i]
            item = Item(index=int(self.indices[i]), path=path, record_id=_record_id(path), meta={"warnings": []})
            items.append(item)
            try:
                with _warnings.catch_warnings(record=True) as caught:
                    _warnings.simplefilter("always")
                    record = self._read(path)
                item.record_id = str(getattr(record, "record_id", None) or item.record_id)
                item.meta = _record_meta(record, caught_messages(caught))
                records.append((item, record))
            except Exception as err:  # noqa: BLE001 -- one bad input is recorded, never raised
                item.error = (type(err).__name__, str(err) or repr(err))
        if records and self.raw:
            from .device_preprocessing import read_raw

            self._wait_for_gate()
            for item, record in records:
                try:
                    item.inputs, warns = read_raw(self.feature_extractor, record, self.quality)
                except Exception as err:  # noqa: BLE001 -- one bad input is recorded, never raised
                    item.error = (type(err).__name__, str(err) or repr(err))
                    continue
                item.meta["warnings"] += [m for m in warns if m not in item.meta["warnings"]]
        elif records:
            prepared = prepare_records([rec for _, rec in records], self.feature_extractor, quality=self.quality,
                                       on_error="record", before_stage=self._wait_for_gate)
            for (item, _), prep in zip(records, prepared):
                if prep.error is not None:
                    item.error = prep.error
                    continue
                item.inputs = prep.inputs
                warns = item.meta["warnings"]  # the reader's notes first
                warns += [m for m in prep.warnings if m not in warns]
                item.meta["n_windows"] = prep.num_windows
        return items

    def _read(self, path: str):
        from ..io import read_ecg

        return read_ecg(path, **self.read_kwargs)


def _record_meta(record, warnings: list) -> dict:
    n = record.signal.shape[-1]
    measured = record.metadata.get("measurements")
    return {
        "sampling_rate": float(record.sampling_rate),
        "duration_s": float(n / record.sampling_rate) if record.sampling_rate else float("nan"),
        "n_leads": int(record.signal.shape[0]),
        "n_windows": 0,
        "warnings": list(warnings),
        # the cart's interval/axis measurements (io.measurements keys), as JSON; None when the file has none
        "measurements": json.dumps(measured) if measured else None,
    }


class RampUpBatches:
    """Consecutive positions `0..n-1` in batches of `batch_size`, except the first ones: `readers` batches of a
    quarter and `readers` of half the size. Each reader process prepares a whole batch, so the model's first forward
    waits for one reader to read and preprocess a full batch alone; a small first batch per reader starts it
    sooner (measured: 0.26 s -> 0.13 s to the first forward of a 1,000-file job with 2 readers); the order is
    unchanged.

    A batch sampler for `DataLoader(batch_sampler=...)`: lazy (an archive of 10^7 inputs holds no index list)."""

    def __init__(self, n: int, batch_size: int, readers: int):
        self.n, self.batch_size, self.readers = int(n), max(1, int(batch_size)), max(0, int(readers))

    def _sizes(self):
        for size in (max(1, self.batch_size // 4), max(1, self.batch_size // 2)):
            for _ in range(self.readers):
                yield size
        while True:
            yield self.batch_size

    def __iter__(self):
        start = 0
        for size in self._sizes():
            if start >= self.n:
                return
            yield list(range(start, min(self.n, start + size)))
            start += size

    def __len__(self) -> int:
        count, start = 0, 0
        for size in self._sizes():
            if start >= self.n or size == self.batch_size:
                break
            count, start = count + 1, start + size
        return count + -(-max(0, self.n - start) // self.batch_size)


@dataclass
class Batch:
    """A batch of records: stacked windows for the model plus the bookkeeping to split the outputs again."""

    inputs: dict  # str -> torch.Tensor, (n_windows_total, ...)
    window_to_record: np.ndarray  # (n_windows_total,) position in `items`
    items: list  # readable Items, in batch order
    errors: list  # failed Items

    def __len__(self) -> int:
        return len(self.items) + len(self.errors)


def collate_items(items: list) -> Batch:
    """Stack the readable items' windows (`torch.from_numpy`, no copy per window) and set the failures apart."""
    ok = [it for it in items if it.error is None]
    errors = [it for it in items if it.error is not None]
    inputs: dict = {}
    w2r = np.zeros(0, dtype=np.int64)
    if ok and "raw" in ok[0].inputs:  # preprocessed on the device by the loop (device_preprocessing)
        inputs = {"raw": [it.inputs for it in ok]}
        for it in ok:
            it.inputs = {}
    elif ok:
        keys = [k for k in MODEL_INPUT_KEYS if all(k in it.inputs for it in ok)]
        for k in keys:
            arrays = [it.inputs[k] for it in ok]
            inputs[k] = torch.from_numpy(np.concatenate(arrays, axis=0) if len(arrays) > 1 else np.ascontiguousarray(arrays[0]))
        w2r = np.concatenate([np.full(it.inputs["input_values"].shape[0], j, dtype=np.int64) for j, it in enumerate(ok)])
        for it in ok:
            it.inputs = {}  # the stacked copy is all that is needed from here on
    return Batch(inputs=inputs, window_to_record=w2r, items=ok, errors=errors)
