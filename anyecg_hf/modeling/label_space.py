"""`LabelSpace`: the ordered conditions a head predicts, with codes and decision thresholds.

A label space travels inside `config.json` (as a list of plain dicts) so that names, codes and thresholds can never
drift from the weights they describe. It can also be read from / written to CSV or JSON so that a user can bring a
1,172-row phecode table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, fields

CODE_SYSTEMS = ("ICD-10", "ICD-9", "phecode", "SNOMED-CT", "free-text")

_COLUMNS = ("id", "name", "code_system", "code", "category", "threshold")


@dataclass(frozen=True)
class Condition:
    """One output of a head.

    Args:
        id (`str`): stable identifier, unique within the label space (used as the key in outputs and tables).
        name (`str`): display name shown to users; also what `config.id2label` holds.
        code_system (`str`): one of `CODE_SYSTEMS` (`"free-text"` when there is no coded form).
        code (`str`, *optional*): the code in that system (e.g. `"I48"`, `"427.2"`, `"164889003"`).
        category (`str`, *optional*): a grouping such as "rhythm" or "circulatory system".
        threshold (`float`, *optional*): decision threshold on the probability, in (0, 1); `None` means 0.5.
    """

    id: str
    name: str
    code_system: str = "free-text"
    code: str | None = None
    category: str | None = None
    threshold: float | None = None

    @property
    def decision_threshold(self) -> float:
        return 0.5 if self.threshold is None else self.threshold


class LabelSpace:
    """An ordered, validated list of `Condition`s.

    Index `i` of a head's output is `label_space[i]`. Validation rejects duplicate ids or names, empty names,
    unknown code systems and thresholds outside (0, 1) with a `ValueError` naming the offending rows.
    """

    def __init__(self, conditions, name: str | None = None):
        conds = []
        for i, c in enumerate(conditions):
            if isinstance(c, Condition):
                conds.append(c)
            elif isinstance(c, dict):
                conds.append(_condition_from_dict(c, row=i))
            else:
                raise ValueError(f"Label space row {i}: expected a Condition or a dict, got {type(c).__name__}.")
        _validate(conds)
        self.conditions: tuple[Condition, ...] = tuple(conds)
        self.name = name
        self._index = {c.id: i for i, c in enumerate(self.conditions)}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_names(cls, names, code_system: str = "free-text", name: str | None = None) -> "LabelSpace":
        """Label space whose ids and display names are the given strings (free-text codes)."""
        return cls([Condition(id=str(n), name=str(n), code_system=code_system) for n in names], name=name)

    @classmethod
    def ecgfounder(cls) -> "LabelSpace":
        """The 150 labels of the public ECGFounder checkpoints, in output order."""
        from .ecgfounder_labels import ECGFOUNDER_LABELS

        return cls.from_names(ECGFOUNDER_LABELS, name="ecgfounder-150")

    @classmethod
    def generic(cls, num_labels: int) -> "LabelSpace":
        """`LABEL_0 ... LABEL_{n-1}`, as transformers names unlabelled outputs."""
        return cls.from_names([f"LABEL_{i}" for i in range(num_labels)])

    @classmethod
    def from_list(cls, rows, name: str | None = None) -> "LabelSpace":
        return cls(rows, name=name)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelSpace":
        """Read a `.csv` (columns: id, name, code_system, code, category, threshold; only `name` is required)
        or `.json` (a list of rows, or `{"name": ..., "conditions": [...]}`) file."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                text = f.read()
        except OSError as err:
            raise ValueError(f"Cannot read label table {path}: {err}") from err
        try:
            if path.lower().endswith(".json"):
                data = json.loads(text)
                if isinstance(data, dict):
                    return cls(data.get("conditions", []), name=data.get("name"))
                return cls(data)
            rows = list(csv.DictReader(io.StringIO(text)))
            if not rows:
                raise ValueError("the table has no rows")
            if "name" not in rows[0] and "id" not in rows[0]:
                raise ValueError(f"needs a 'name' or 'id' column, found columns {list(rows[0])}")
            return cls(rows)
        except (ValueError, json.JSONDecodeError) as err:
            raise ValueError(f"Invalid label table {path}: {err}") from err

    # ------------------------------------------------------------------ serialisation
    def to_list(self) -> list[dict]:
        """Plain rows (what config.json stores)."""
        return [asdict(c) for c in self.conditions]

    def save(self, path: str | os.PathLike) -> None:
        path = os.fspath(path)
        if path.lower().endswith(".json"):
            with open(path, "w", encoding="utf-8") as f:
                json.dump({"name": self.name, "conditions": self.to_list()}, f, indent=2, ensure_ascii=False)
            return
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_COLUMNS)
            writer.writeheader()
            for row in self.to_list():
                writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.conditions)

    def __iter__(self):
        return iter(self.conditions)

    def __getitem__(self, i):
        return self.conditions[i]

    def __eq__(self, other) -> bool:
        return isinstance(other, LabelSpace) and self.conditions == other.conditions

    def __repr__(self) -> str:
        head = ", ".join(c.name for c in self.conditions[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"LabelSpace({len(self)} conditions: {head}{more})"

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.conditions]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.conditions]

    @property
    def thresholds(self) -> list[float]:
        return [c.decision_threshold for c in self.conditions]

    def index(self, condition_id: str) -> int:
        try:
            return self._index[condition_id]
        except KeyError:
            raise KeyError(f"Condition {condition_id!r} is not in this label space.") from None

    def id2label(self) -> dict[int, str]:
        return {i: c.name for i, c in enumerate(self.conditions)}

    def label2id(self) -> dict[str, int]:
        return {c.name: i for i, c in enumerate(self.conditions)}

    def with_thresholds(self, thresholds) -> "LabelSpace":
        """A copy with new decision thresholds (e.g. after recalibration on a local cohort)."""
        thresholds = list(thresholds)
        if len(thresholds) != len(self):
            raise ValueError(f"Got {len(thresholds)} thresholds for {len(self)} conditions.")
        rows = [dict(r, threshold=None if t is None else float(t)) for r, t in zip(self.to_list(), thresholds)]
        return LabelSpace(rows, name=self.name)


def _condition_from_dict(data: dict, row: int) -> Condition:
    where = f"Label space row {row}"
    known = {f.name for f in fields(Condition)}
    clean = {}
    for key, value in data.items():
        if key is None:
            continue
        key = key.strip()
        if key not in known:
            continue  # extra columns of a user's table (counts, notes) are ignored
        if isinstance(value, str):
            value = value.strip()
            if value == "":
                value = None
        clean[key] = value
    # A missing column falls back to the other one; a present but empty cell is an error.
    if "name" not in clean and clean.get("id") is not None:
        clean["name"] = clean["id"]
    if "id" not in clean and clean.get("name") is not None:
        clean["id"] = clean["name"]
    if clean.get("name") is None:
        raise ValueError(f"{where}: empty condition name.")
    if clean.get("id") is None:
        raise ValueError(f"{where} ({clean['name']!r}): empty id.")
    clean["id"], clean["name"] = str(clean["id"]), str(clean["name"])
    if clean.get("code") is not None:
        clean["code"] = str(clean["code"])
    if clean.get("code_system") is None:
        clean["code_system"] = "free-text"
    if clean.get("threshold") is not None:
        try:
            clean["threshold"] = float(clean["threshold"])
        except (TypeError, ValueError):
            raise ValueError(f"{where} ({clean['name']!r}): threshold {clean['threshold']!r} is not a number.") from None
    return Condition(**clean)


def _validate(conds: list[Condition]) -> None:
    problems = []
    seen_ids: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    for i, c in enumerate(conds):
        if not c.id.strip():
            problems.append(f"row {i}: empty id")
        if not c.name.strip():
            problems.append(f"row {i}: empty name")
        if c.id in seen_ids:
            problems.append(f"row {i}: duplicate id {c.id!r} (first at row {seen_ids[c.id]})")
        seen_ids.setdefault(c.id, i)
        if c.name in seen_names:
            problems.append(f"row {i}: duplicate name {c.name!r} (first at row {seen_names[c.name]})")
        seen_names.setdefault(c.name, i)
        if c.code_system not in CODE_SYSTEMS:
            problems.append(f"row {i}: unknown code_system {c.code_system!r} (expected one of {', '.join(CODE_SYSTEMS)})")
        if c.threshold is not None and not (math.isfinite(c.threshold) and 0.0 < c.threshold < 1.0):
            problems.append(f"row {i} ({c.name!r}): threshold {c.threshold} is outside (0, 1)")
    if not conds:
        problems.append("no conditions")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ValueError(f"Invalid label space: {shown}.")
