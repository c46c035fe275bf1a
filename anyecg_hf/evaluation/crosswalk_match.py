"""Evaluation through a crosswalk (`anyecg evaluate --label-map snomed|ptbxl|PATH.csv`).

`anyecg_hf.labels.match_conditions` gives each dataset condition the model labels that imply it (possibly several:
many-to-one); `crosswalk_predictions` turns the model's probabilities into one column per matched dataset condition
(`--label-aggregate max|mean`) and returns a `CrosswalkMatch`, which has the interface of
`label_matching.LabelMatch` (pairs, unmatched lists, `summary`, `to_frame`, `to_dict`), so the evaluation and the
report treat both alike. `complete_table` then gives the per-condition table one row per dataset condition: the
matched model label(s), the crosswalk tier, and the unmatched conditions as undefined rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ..labels import IMPLIED_TIERS, aggregate_probabilities, match_conditions, resolve_crosswalk


@dataclass
class CrosswalkMatch:
    """Dataset conditions matched to (groups of) model labels through a crosswalk."""

    matched: list
    unmatched: list
    model_space: list  # one entry per derived output: `.id` = the model labels joined by " | "
    data_space: object
    source_space: object  # the model's own label space
    label_map: str = ""
    version: str = ""
    aggregate: str = "max"
    unmatched_model: list = field(default_factory=list)

    @property
    def pairs(self) -> list:
        return [(m.data_index, k, f"{m.how}:{m.tier}" if "crosswalk" in m.how else m.how)
                for k, m in enumerate(self.matched)]

    @property
    def unmatched_dataset(self) -> list:
        return [m.data_index for m in self.unmatched]

    @property
    def data_index(self) -> np.ndarray:
        return np.array([m.data_index for m in self.matched], dtype=np.int64)

    @property
    def model_index(self) -> np.ndarray:
        return np.arange(len(self.matched), dtype=np.int64)

    is_identity = False

    def summary(self) -> str:
        tiers: dict[str, int] = {}
        for m in self.matched:
            key = m.tier or f"direct ({m.how})"
            tiers[key] = tiers.get(key, 0) + 1
        counts = ", ".join(f"{n} {t}" for t, n in tiers.items()) or "none"
        lines = [f"{len(self.matched)} of the dataset's {len(self.data_space)} conditions are matched to the model's "
                 f"{len(self.source_space)} outputs through the crosswalk {self.label_map} {self.version} ({counts}); "
                 f"several model labels per condition are combined by {self.aggregate}."]
        if self.unmatched:
            names = [f"{m.id} ({m.name})" for m in self.unmatched]
            lines.append(f"Not evaluated, no model label implies them: {', '.join(names)}.")
        return "\n".join(lines)

    def to_frame(self):
        import pandas as pd

        rows = [m.as_row() for m in sorted(self.matched + self.unmatched, key=lambda m: m.data_index)]
        for row in rows:
            row["matched_by"] = row["matched_by"] or "unmatched"
        return pd.DataFrame(rows, columns=["id", "name", "code_system", "code", "model_labels", "tier", "matched_by"])

    def to_dict(self) -> dict:
        return {
            "label_map": self.label_map, "label_map_version": self.version, "label_aggregate": self.aggregate,
            "matched": [{"dataset_id": m.id, "model_labels": list(m.model_labels), "tier": m.tier,
                         "matched_by": m.how} for m in self.matched],
            "unmatched_dataset": [m.id for m in self.unmatched],
        }

    def derive(self, probs):
        """The model's (n, labels) probabilities -> one column per matched dataset condition (max or mean of its
        labels); a `collect_predictions` dict gets its `diagnosis_probs` replaced (`None` stays `None`)."""
        if probs is None:
            return None
        if isinstance(probs, dict):
            if "diagnosis_probs" not in probs:
                return probs
            return {**probs, "diagnosis_probs": self.derive(probs["diagnosis_probs"])}
        return aggregate_probabilities(probs, self.matched, self.aggregate)

    def model_card_line(self) -> str:
        return (f"Dataset conditions were matched to the model's labels through the crosswalk `{self.label_map}` "
                f"(version {self.version}; tiers {', '.join(IMPLIED_TIERS)}), several labels combined by "
                f"{self.aggregate}; {len(self.matched)} of {len(self.data_space)} conditions matched.")


def crosswalk_match(model_space, data_space, label_map, aggregate: str = "max", tiers=IMPLIED_TIERS) -> CrosswalkMatch:
    """Match the dataset's conditions to the model's labels through a crosswalk (name, CSV path or table)."""
    from ..labels import AGGREGATES

    if aggregate not in AGGREGATES:
        raise ValueError(f"label aggregation must be one of {AGGREGATES}, got {aggregate!r}.")
    table = resolve_crosswalk(label_map)
    matched, unmatched = match_conditions(model_space, data_space, table, tiers=tiers)
    outputs = [SimpleNamespace(id=" | ".join(m.model_labels), name=" | ".join(m.model_labels)) for m in matched]
    used = {i for m in matched for i in m.model_indices}
    return CrosswalkMatch(matched=matched, unmatched=unmatched, model_space=outputs, data_space=data_space,
                          source_space=model_space, label_map=table.attrs.get("name", str(label_map)),
                          version=str(table.attrs.get("version", "")), aggregate=aggregate,
                          unmatched_model=[i for i in range(len(model_space)) if i not in used])


def crosswalk_predictions(probs, model_space, data_space, label_map, aggregate: str = "max", tiers=IMPLIED_TIERS):
    """`(derived probabilities (n, matched), CrosswalkMatch)` for a crosswalk name, CSV path or table."""
    match = crosswalk_match(model_space, data_space, label_map, aggregate, tiers)
    return match.derive(probs), match


def complete_table(report, match: CrosswalkMatch) -> None:
    """Give `report.table` one row per dataset condition: the `tier` of the matched ones (their model labels are in
    `model_id`, or `model_labels` when the table has no `model_id`), and the unmatched ones appended as undefined
    (`undefined_reason` = "no model label matched")."""
    import pandas as pd

    table = report.table
    by_id = {m.id: m for m in match.matched}
    labels = [" | ".join(by_id[i].model_labels) if i in by_id else "" for i in table["id"]]
    tiers = [by_id[i].tier or by_id[i].how if i in by_id else "" for i in table["id"]]
    at = list(table.columns).index("code") + 1 if "code" in table.columns else len(table.columns)
    columns = [("tier", tiers)] + ([] if "model_id" in table.columns else [("model_labels", labels)])
    for name, values in columns:
        if name in table.columns:
            table[name] = values
        else:
            table.insert(at, name, values)
    extra = [{**{c: np.nan for c in table.columns}, "id": m.id, "name": m.name, "code_system": m.code_system,
              "code": m.code, "tier": "", "defined": False,
              "undefined_reason": "no model label matched"} for m in match.unmatched]
    if extra:
        for column in ("model_id", "matched_by"):
            if column in table.columns:
                for row in extra:
                    row[column] = "" if column == "model_id" else "unmatched"
        table = pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)
        order = {m.id: m.data_index for m in match.matched + match.unmatched}
        table = table.sort_values("id", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    report.table = table
