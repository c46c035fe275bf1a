"""`ECGDataCollator`: rows of an ECG dataset -> a batch of model inputs and targets (torch tensors).

It takes either preprocessed rows (`input_values` from `prepare_dataset`, leads in the model's order) or raw rows
(`signal` + `gain` from `build_ecg_dataset`, run through a feature extractor on the fly), cuts every record to one
window of `num_samples` (the first, the centre, or a random one), applies the augmentations, pads short records
(`sample_mask` marks real samples) and stacks the targets. The output keys are the model `forward` arguments, so
`model(**batch)` works, and so does the HF `Trainer` (with `remove_unused_columns=False`, so that `label_mask` and
the risk targets reach the model).
"""

from __future__ import annotations

import numpy as np
import torch

from .augment import ECGAugmentation
from .storage import decode_signal

# target column -> (dtype, mask column): entries whose mask is 0 are set to 0 so NaN placeholders never reach a loss
TARGETS = {
    "labels": (torch.float32, "label_mask"),
    "label_mask": (torch.bool, None),
    "event_times": (torch.float32, "at_risk_mask"),
    "events": (torch.float32, "at_risk_mask"),
    "at_risk_mask": (torch.bool, None),
    "regression_targets": (torch.float32, "regression_mask"),
    "regression_mask": (torch.bool, None),
}
WINDOWS = ("start", "center", "random", "all")


class ECGDataCollator:
    """Collate ECG dataset rows into a batch.

    Args:
        num_samples (`int`): window length in samples (the model's `config.num_samples`).
        num_leads (`int`, *optional*): leads of the model input (needed to reshape flat `input_values`; default: the
            length of each row's `lead_mask`).
        sampling_rate (`float`): sampling rate of the model input (used by the baseline-wander augmentation).
        window (`str`): which window of a record (among the windows `prepare_dataset` stored, then within it when it
            is longer than `num_samples`): `"start"` (default), `"center"`, `"random"` (seeded as the augmentations;
            `augmentation.random_crop=True` also selects it when training), or `"all"` (evaluation: every stored
            window becomes a batch row, and `window_to_record` maps rows to records; pop it before `model(**batch)`).
        augmentation (`ECGAugmentation`, *optional*): off when `None`.
        feature_extractor (*optional*): an `AnyECGFeatureExtractor` for raw rows (`signal` / `gain` / `lead_names` /
            `sampling_rate`); its own `windowing` decides which windows are cut.
        target_keys (`tuple`): target columns to collate when present.
        keep_keys (`tuple`): other columns passed through as Python lists (e.g. `("record_id", "patient_id")` for
            evaluation). Leave empty for training with the `Trainer`.
        train (`bool`): apply augmentations and random windows; evaluation collators use `train=False`.
        ehr_index (`anyecg_hf.ehr.ConditionIndex`, *optional*): rows built with EHR targets (`ehr_*` columns, see
            `anyecg_hf.ehr.dataset`) are expanded into `labels` / `label_mask` / `event_times` / `events` /
            `at_risk_mask` here, per batch (`anyecg_hf.ehr.dataset.condition_index(ds)` reads it from the dataset).
    """

    def __init__(self, num_samples: int, num_leads: int | None = None, sampling_rate: float = 500.0, window: str = "start",
                 augmentation: ECGAugmentation | None = None, feature_extractor=None, target_keys=tuple(TARGETS),
                 keep_keys=(), train: bool = True, ehr_index=None):
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {window!r}.")
        self.num_samples = int(num_samples)
        self.num_leads = num_leads
        self.sampling_rate = float(sampling_rate)
        self.window = window
        self.augmentation = augmentation or ECGAugmentation()
        self.feature_extractor = feature_extractor
        self.target_keys = tuple(target_keys)
        self.keep_keys = tuple(keep_keys)
        self.train = train
        self.ehr_index = ehr_index
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Seed of the augmentations and random windows; recipes call it at every epoch."""
        self.epoch = int(epoch)

    # ---------------------------------------------------------------------------------------------- inputs
    def _model_input(self, row: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(windows (W, leads, T), lead_mask (leads,), valid (W,))` of one row; `valid` = real samples per window."""
        if row.get("input_values") is not None:
            mask = np.asarray(row["lead_mask"], dtype=bool) if row.get("lead_mask") is not None else None
            x = np.asarray(row["input_values"], dtype=np.float32)
            leads = len(mask) if mask is not None else (self.num_leads or (x.shape[-2] if x.ndim >= 2 else None))
            if not leads:
                raise ValueError("flat input_values need a lead_mask column or num_leads.")
            n_w = int(row.get("num_windows") or 1)
            x = x.reshape(n_w, int(leads), -1)
            if mask is None:
                mask = np.ones(x.shape[1], bool)
            valid = np.asarray(row["window_valid"], dtype=np.int64) if row.get("window_valid") is not None else \
                np.full(n_w, x.shape[2], np.int64)
            return x, mask, np.minimum(valid, x.shape[2])
        if row.get("signal") is not None:
            if self.feature_extractor is None:
                raise ValueError("raw rows (signal/gain) need a feature_extractor; or run anyecg_hf.data.prepare_dataset first.")
            sig = decode_signal(row["signal"], row["gain"])
            out = self.feature_extractor(sig, sampling_rate=float(row["sampling_rate"]), lead_names=list(row["lead_names"]),
                                         return_tensors="np")
            x = np.asarray(out["input_values"], dtype=np.float32)
            mask = np.asarray(out["lead_mask"][0], dtype=bool)
            return x, mask, np.asarray(out["sample_mask"]).sum(axis=1).astype(np.int64)
        raise ValueError(f"a row needs 'input_values' or 'signal'; it has {sorted(row)}.")

    def _pick(self, n_windows: int, valid: np.ndarray, rng) -> list[tuple[int, int]]:
        """`(window index, start sample)` pairs to take from one record."""
        if self.window == "all" and not self.train:
            return [(w, 0) for w in range(n_windows)]
        randomly = self.train and (self.window == "random" or self.augmentation.random_crop)
        if randomly:
            w = int(rng.integers(0, n_windows))
        elif self.window == "center":
            w = n_windows // 2
        else:
            w = 0
        extra = int(valid[w]) - self.num_samples
        if extra <= 0:
            return [(w, 0)]
        if randomly:
            return [(w, int(rng.integers(0, extra + 1)))]
        return [(w, extra // 2 if self.window == "center" else 0)]

    def __call__(self, rows: list[dict]) -> dict:
        xs, masks, valids, owners = [], [], [], []
        for i, row in enumerate(rows):
            x, mask, valid = self._model_input(row)
            rng = None
            if self.train and (self.augmentation.enabled or self.window == "random"):
                rng = self.augmentation.rng(self.epoch, row.get("record_id", i))
            for w, start in self._pick(x.shape[0], valid, rng):
                stop = min(int(valid[w]), start + self.num_samples)
                window, wmask = x[w, :, start:stop], mask
                if self.train and self.augmentation.enabled:
                    window, wmask = self.augmentation.apply(window, mask, self.sampling_rate, rng)
                out = np.zeros((x.shape[1], self.num_samples), np.float32)
                out[:, : window.shape[1]] = window
                xs.append(out)
                masks.append(wmask)
                valids.append(window.shape[1])
                owners.append(i)
        if len({x.shape[0] for x in xs}) > 1:
            raise ValueError(f"rows have different numbers of leads {sorted({x.shape[0] for x in xs})}; preprocess them "
                             "with the model's feature extractor first.")
        sample_mask = np.arange(self.num_samples)[None, :] < np.asarray(valids)[:, None]
        batch = {
            "input_values": torch.from_numpy(np.stack(xs)),
            "lead_mask": torch.from_numpy(np.stack(masks)),
            "sample_mask": torch.from_numpy(sample_mask),
        }
        take = np.asarray(owners)
        if self.ehr_index is not None and "ehr_t0" in rows[0]:
            from ..ehr.dataset import expand_rows

            rows = [{**r, **t} for r, t in zip(rows, _unstack(expand_rows(rows, self.ehr_index)))]
        for key in self.target_keys:
            if key not in rows[0] or rows[0][key] is None:
                continue
            dtype, mask_key = TARGETS.get(key, (torch.float32, None))
            values = np.asarray([r[key] for r in rows], dtype=np.float32)
            if mask_key is not None and mask_key in rows[0]:
                known = np.asarray([r[mask_key] for r in rows], dtype=bool)
                values = np.where(known, values, 0.0)
            t = torch.from_numpy(values[take])
            batch[key] = t.bool() if dtype is torch.bool else t.to(dtype)
        for key in self.keep_keys:
            if key in rows[0]:
                batch[key] = [rows[j][key] for j in owners]
        if self.window == "all" and not self.train:
            batch["window_to_record"] = torch.from_numpy(take.astype(np.int64))
        return batch


def _unstack(arrays: dict) -> list[dict]:
    n = len(next(iter(arrays.values())))
    return [{k: v[i] for k, v in arrays.items()} for i in range(n)]
