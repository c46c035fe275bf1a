"""Which of a model's outputs score which of a dataset's label columns.

A model and the dataset it is evaluated on rarely share a label space (the 150 ECGFounder statements against the
SNOMED-CT codes of a CinC dataset). `match_label_spaces` pairs them with an ordered list of matchers, each a
`(how, function)`; a function proposes `(dataset index, model index)` pairs and a pair is kept when neither side was
matched by an earlier matcher. The defaults pair by condition id, then by (code system, code), then by name
(case-insensitive). More matchers (a crosswalk between code systems, ...) are appended to `DEFAULT_MATCHERS` by the
caller; nothing else has to change.

Only matched conditions are evaluated; unmatched ones are listed in the report, never scored against zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = ["LabelMatch", "match_label_spaces", "DEFAULT_MATCHERS", "match_by_id", "match_by_code", "match_by_name"]

Matcher = Callable[[object, object], Iterable[tuple[int, int]]]


def _by_key(model_space, data_space, key) -> list[tuple[int, int]]:
    index: dict = {}
    for j, c in enumerate(data_space):
        k = key(c)
        if k is not None:
            index.setdefault(k, j)
    out = []
    for i, c in enumerate(model_space):
        k = key(c)
        if k is not None and k in index:
            out.append((index[k], i))
    return out


def match_by_id(model_space, data_space) -> list[tuple[int, int]]:
    """Same condition id."""
    return _by_key(model_space, data_space, lambda c: c.id)


def match_by_code(model_space, data_space) -> list[tuple[int, int]]:
    """Same code system and code (conditions without a code never match)."""
    return _by_key(model_space, data_space, lambda c: (c.code_system, str(c.code)) if c.code else None)


def match_by_name(model_space, data_space) -> list[tuple[int, int]]:
    """Same display name, ignoring case and surrounding blanks (`"ATRIAL FIBRILLATION"` = `"atrial fibrillation"`)."""
    return _by_key(model_space, data_space, lambda c: " ".join(c.name.split()).casefold() or None)


DEFAULT_MATCHERS: tuple[tuple[str, Matcher], ...] = (("id", match_by_id), ("code", match_by_code),
                                                     ("name", match_by_name))


@dataclass
class LabelMatch:
    """The result of `match_label_spaces`.

    Attributes:
        pairs (`list` of `(dataset index, model index, how)`): in dataset column order; `how` names the matcher.
        unmatched_dataset (`list[int]`): dataset columns no model output scores.
        unmatched_model (`list[int]`): model outputs with no dataset column.
        model_space, data_space: the two label spaces.
    """

    pairs: list = field(default_factory=list)
    unmatched_dataset: list = field(default_factory=list)
    unmatched_model: list = field(default_factory=list)
    model_space: object = None
    data_space: object = None

    @property
    def data_index(self) -> np.ndarray:
        return np.array([j for j, _, _ in self.pairs], dtype=np.int64)

    @property
    def model_index(self) -> np.ndarray:
        return np.array([i for _, i, _ in self.pairs], dtype=np.int64)

    @property
    def is_identity(self) -> bool:
        """Dataset column k is model output k for every k (the dataset follows the model's label space)."""
        return (len(self.model_space) == len(self.data_space) == len(self.pairs)
                and all(j == i for j, i, _ in self.pairs))

    def model_to_data(self) -> np.ndarray:
        """For each model output, its dataset column (-1 when unmatched)."""
        out = np.full(len(self.model_space), -1, np.int64)
        for j, i, _ in self.pairs:
            out[i] = j
        return out

    def summary(self) -> str:
        """One line per fact, for the terminal and the report."""
        n_model, n_data = len(self.model_space), len(self.data_space)
        lines = [f"{len(self.pairs)} of the dataset's {n_data} conditions are matched to the model's {n_model} "
                 f"outputs ({_counts(self.pairs)})."]
        if self.unmatched_dataset:
            names = [f"{self.data_space[j].id} ({self.data_space[j].name})" for j in self.unmatched_dataset]
            lines.append(f"Not evaluated, no model output: {', '.join(names)}.")
        if self.unmatched_model:
            lines.append(f"{len(self.unmatched_model)} model output(s) have no dataset column and are not evaluated.")
        return "\n".join(lines)

    def to_frame(self):
        """One row per dataset condition and per unmatched model output: `dataset_id`, `dataset_name`,
        `dataset_code`, `model_id`, `model_name`, `matched_by` (`"unmatched"` when there is no partner)."""
        import pandas as pd

        rows = []
        partner = {j: (i, how) for j, i, how in self.pairs}
        for j, c in enumerate(self.data_space):
            i, how = partner.get(j, (None, "unmatched"))
            m = self.model_space[i] if i is not None else None
            rows.append(dict(dataset_id=c.id, dataset_name=c.name, dataset_code=c.code or "",
                             model_id=m.id if m else "", model_name=m.name if m else "", matched_by=how))
        for i in self.unmatched_model:
            m = self.model_space[i]
            rows.append(dict(dataset_id="", dataset_name="", dataset_code="", model_id=m.id, model_name=m.name,
                             matched_by="unmatched"))
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {
            "matched": [{"dataset_id": self.data_space[j].id, "model_id": self.model_space[i].id, "matched_by": how}
                        for j, i, how in self.pairs],
            "unmatched_dataset": [self.data_space[j].id for j in self.unmatched_dataset],
            "unmatched_model": [self.model_space[i].id for i in self.unmatched_model],
        }


def _counts(pairs) -> str:
    counts: dict[str, int] = {}
    for _, _, how in pairs:
        counts[how] = counts.get(how, 0) + 1
    return ", ".join(f"{n} by {how}" for how, n in counts.items()) or "none"


def match_label_spaces(model_space, data_space, matchers: Sequence[tuple[str, Matcher]] | None = None) -> LabelMatch:
    """Pair the dataset's conditions with the model's outputs, one to one.

    Args:
        model_space (`LabelSpace`): what the model's head predicts, in output order.
        data_space (`LabelSpace` or `None`): what the dataset's label columns hold; `None` = the model's own.
        matchers (*optional*): `(how, function)` tried in order (default `DEFAULT_MATCHERS`: id, code, name); a
            function takes `(model_space, data_space)` and returns `(dataset index, model index)` candidates.

    Returns:
        `LabelMatch` with the pairs (dataset order) and the unmatched conditions of each side.
    """
    data_space = model_space if data_space is None else data_space
    used_data: dict[int, tuple[int, str]] = {}
    used_model: set[int] = set()
    for how, fn in (DEFAULT_MATCHERS if matchers is None else matchers):
        for j, i in fn(model_space, data_space):
            j, i = int(j), int(i)
            if not (0 <= j < len(data_space) and 0 <= i < len(model_space)):
                raise ValueError(f"label matcher {how!r} returned ({j}, {i}) outside the label spaces "
                                 f"({len(data_space)} dataset, {len(model_space)} model conditions).")
            if j not in used_data and i not in used_model:
                used_data[j] = (i, how)
                used_model.add(i)
    pairs = [(j, i, how) for j, (i, how) in sorted(used_data.items())]
    return LabelMatch(
        pairs=pairs,
        unmatched_dataset=[j for j in range(len(data_space)) if j not in used_data],
        unmatched_model=[i for i in range(len(model_space)) if i not in used_model],
        model_space=model_space,
        data_space=data_space,
    )
