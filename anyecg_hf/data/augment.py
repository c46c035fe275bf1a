"""ECG augmentations for fine-tuning. Every one is off by default; a recipe records the settings in its run config.

They act on model inputs (after the feature extractor: leads x samples, normalised), inside the data collator, with
a random generator seeded from `(seed, epoch, record_id)`, so the same record gets the same augmentation in the same
epoch whatever the number of processes, dataloader workers, or an interruption and resume.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, fields

import numpy as np


@dataclass
class ECGAugmentation:
    """Augmentation settings (all off by default).

    Args:
        random_crop (`bool`): take a random window of the record instead of the first one (records longer than the
            window only).
        lead_dropout (`float`): probability of zeroing each recorded lead (its `lead_mask` entry becomes 0); at least
            one lead is always kept.
        amplitude_scale (`tuple[float, float]` or `None`): multiply each lead by a factor drawn uniformly from
            `(low, high)`, e.g. `(0.8, 1.2)`.
        baseline_wander (`float`): amplitude of an added sinusoid of random frequency in `baseline_wander_hz` and random
            phase, per lead (in input units: about standard deviations after the default normalisation).
        baseline_wander_hz (`tuple[float, float]`): frequency range (Hz) of the wander (respiration is 0.15-0.5 Hz).
        gaussian_noise (`float`): standard deviation of added white noise (input units).
        seed (`int`): base seed.
    """

    random_crop: bool = False
    lead_dropout: float = 0.0
    amplitude_scale: tuple | None = None
    baseline_wander: float = 0.0
    baseline_wander_hz: tuple = (0.05, 0.5)
    gaussian_noise: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.lead_dropout < 1.0:
            raise ValueError(f"lead_dropout must be in [0, 1), got {self.lead_dropout}.")
        if self.amplitude_scale is not None:
            lo, hi = (float(v) for v in self.amplitude_scale)
            if not 0 < lo <= hi:
                raise ValueError(f"amplitude_scale must be (low, high) with 0 < low <= high, got {self.amplitude_scale}.")
            self.amplitude_scale = (lo, hi)
        if self.baseline_wander < 0 or self.gaussian_noise < 0:
            raise ValueError("baseline_wander and gaussian_noise must be >= 0.")
        self.baseline_wander_hz = tuple(float(v) for v in self.baseline_wander_hz)

    @classmethod
    def from_dict(cls, d: dict | None) -> "ECGAugmentation":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown augmentation setting(s) {unknown}; known: {sorted(known)}.")
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["amplitude_scale"] = None if self.amplitude_scale is None else list(self.amplitude_scale)
        d["baseline_wander_hz"] = list(self.baseline_wander_hz)
        return d

    @property
    def enabled(self) -> bool:
        return bool(self.random_crop or self.lead_dropout or self.amplitude_scale or self.baseline_wander or self.gaussian_noise)

    def rng(self, epoch: int, record_id: str) -> np.random.Generator:
        """The generator of one record in one epoch."""
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, int(epoch), zlib.crc32(str(record_id).encode())])

    def apply(self, x: np.ndarray, lead_mask: np.ndarray, sampling_rate: float, rng: np.random.Generator):
        """Augment one window `x` `(leads, samples)` in place-safe fashion; returns `(x, lead_mask)`.

        Missing leads (`lead_mask == 0`) stay exactly zero.
        """
        x = np.array(x, dtype=np.float32, copy=True)
        mask = np.asarray(lead_mask, dtype=bool).copy()
        leads, n = x.shape
        if self.lead_dropout > 0 and mask.sum() > 1:
            drop = (rng.random(leads) < self.lead_dropout) & mask
            if drop.sum() >= mask.sum():  # keep one recorded lead
                keep = rng.choice(np.flatnonzero(mask))
                drop[keep] = False
            mask &= ~drop
        if self.amplitude_scale is not None:
            x *= rng.uniform(*self.amplitude_scale, size=(leads, 1)).astype(np.float32)
        if self.baseline_wander > 0:
            t = np.arange(n, dtype=np.float32) / np.float32(sampling_rate)
            omega = (2 * np.pi * rng.uniform(*self.baseline_wander_hz, size=(leads, 1))).astype(np.float32)
            phase = rng.uniform(0, 2 * np.pi, size=(leads, 1)).astype(np.float32)
            x += np.float32(self.baseline_wander) * np.sin(omega * t + phase)
        if self.gaussian_noise > 0:
            x += np.float32(self.gaussian_noise) * rng.standard_normal(size=x.shape, dtype=np.float32)
        x[~mask] = 0.0
        return x, mask
