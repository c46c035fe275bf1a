"""Preprocessing on the model's device (GPU jobs): the readers only read a file and put its leads in the model's
order (`AnyECGFeatureExtractor.raw_inputs`, plus the signal-quality flags when asked); resampling, filtering,
the running median and the z-score run as torch operations next to the model
(`processing.torch_preprocessing`), so a GPU is not left waiting on the CPU's filters.

`--preprocess-on auto` (default) does this when `--device` is a GPU; `device` forces it (tests run it on CPU
tensors), `cpu` keeps the numba path in the readers.
"""

from __future__ import annotations

import warnings as _warnings

import numpy as np

from ..prediction.inputs import caught_messages, strip_record_prefix

CHOICES = ("auto", "cpu", "device")


def use_device_preprocessing(choice: str, device) -> bool:
    """Whether a job with `--preprocess-on choice` on `device` preprocesses on the device."""
    if choice not in CHOICES:
        raise ValueError(f"preprocess_on must be one of {CHOICES}, got {choice!r}")
    return choice == "device" or (choice == "auto" and getattr(device, "type", str(device)).startswith("cuda"))


def read_raw(extractor, record, quality: bool) -> tuple[dict, list]:
    """A reader's share for one record: `({"raw": (leads, samples) float32 mV, "lead_mask", "fs"}, warnings)`.

    float32 halves what crosses to the main process and the device; it moves the raw millivolts by ~6e-8 of their
    size, far below the 1e-4 parity tolerance. Raises the extractor's `ECGInputError` for an unusable record."""
    rid = getattr(record, "record_id", None)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        raw = extractor.raw_inputs([record])[0]
    flags = []
    if quality:
        try:
            flags = [str(f) for f in extractor.check_quality([record])[0]]
        except Exception as err:  # noqa: BLE001 -- a quality check must never stop a prediction
            flags = [f"signal-quality check failed ({type(err).__name__}: {err})"]
    warns = []
    for message in flags + caught_messages(caught):  # quality flags first, as prepare_records orders them
        message = strip_record_prefix(message, rid)
        if message not in warns:
            warns.append(message)
    inputs = {"raw": np.asarray(raw["x"], dtype=np.float32), "lead_mask": raw["lead_mask"], "fs": float(raw["fs"])}
    return inputs, warns


def device_inputs(raw_items: list[dict], preprocessor) -> tuple[dict, np.ndarray]:
    """`read_raw` outputs of a batch -> (model inputs on the preprocessor's device, window -> item index)."""
    from ..processing.torch_preprocessing import preprocess_raw_inputs

    out = preprocess_raw_inputs([{"x": r["raw"], "lead_mask": r["lead_mask"], "fs": r["fs"]} for r in raw_items],
                                preprocessor)
    owners = out.pop("window_to_record").cpu().numpy()
    return out, owners
