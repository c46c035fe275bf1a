"""Samplers whose order depends only on `(seed, epoch)`, so that every process of a distributed run draws the same
sequence (Accelerate then gives each process its slice of every batch) and a resumed run can skip exactly the
batches already seen."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """A permutation of `range(n)` drawn from `seed + epoch` (or the identity when `shuffle=False`).

    Call `set_epoch(epoch)` before each epoch (Accelerate's prepared dataloader forwards `set_epoch` to it).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), bool(shuffle), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def label_balance_weights(labels, label_mask=None, power: float = 0.5) -> np.ndarray:
    r"""Sampling weight of each record from its known positive labels.

    .. math:: w_i = \Big(\max_{j:\ m_{ij} y_{ij} = 1} \frac{1}{n_j}\Big)^{p}, \qquad
              n_j = \sum_i m_{ij} y_{ij}

    so a record carrying a rare condition is drawn more often (`power=1`: each condition's positives are drawn
    about equally often; `power=0`: uniform). Records without a known positive get the weight of the most frequent
    condition. Unknown labels (`label_mask == 0`) never count.
    """
    y = np.asarray(labels, dtype=np.float64)
    m = np.ones_like(y, bool) if label_mask is None else np.asarray(label_mask, dtype=bool)
    pos = (y > 0.5) & m
    counts = pos.sum(axis=0)
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    w = (pos * inv[None, :]).max(axis=1)
    floor = inv[counts > 0].min() if (counts > 0).any() else 1.0
    w = np.where(w > 0, w, floor)
    return w**power


class LabelBalancedSampler(Sampler[int]):
    """Draws `num_samples` records per epoch with replacement, with probabilities from `label_balance_weights`
    (rare conditions up-weighted, unknown labels ignored); deterministic given `(seed, epoch)`.

    Args:
        labels, label_mask: `(n, n_labels)` arrays (e.g. `dataset["labels"]`, `dataset["label_mask"]`).
        num_samples (`int`, *optional*): draws per epoch (default `n`).
        power (`float`): see `label_balance_weights`.
        seed (`int`): base seed.
    """

    def __init__(self, labels, label_mask=None, num_samples: int | None = None, power: float = 0.5, seed: int = 0):
        self.weights = torch.as_tensor(label_balance_weights(labels, label_mask, power), dtype=torch.double)
        self.num_samples = int(num_samples or len(self.weights))
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples
