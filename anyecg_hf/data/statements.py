"""A label table from the machine statements stored in the ECG files themselves (`--labels-from statements`).

Each file is read with `read_ecg` (the dataset builder reads the signals again afterwards: labelling stays a separate
pass that can be rerun alone); its `diagnosis_statements` (GE MUSE, CardioSoft, Philips, HL7 aECG, DICOM, SCP-ECG
readers) are mapped by `anyecg_hf.labels.label_statements` to ECGFounder's 150 labels or, through the
crosswalk, to SNOMED-CT codes / PTB-XL statements. The result is a wide table (one 0/1 column per condition, since
ECGFounder's label names contain spaces) that `build_ecg_dataset` takes as is, plus a per-statement listing and a
coverage summary so users can see which statements were serial comparisons or stayed unmapped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..labels import crosswalk, label_statements, statement_coverage
from ..modeling.label_space import Condition, LabelSpace

_TARGET_SYSTEM = {"snomed": "SNOMED-CT", "ptbxl": "free-text"}


def statement_label_space(target: str = "ecgfounder") -> LabelSpace:
    """The conditions statements can be labelled with: ECGFounder's 150 labels, or every code of a crosswalk that
    some label implies (named as in the crosswalk's source table)."""
    if target == "ecgfounder":
        return LabelSpace.ecgfounder()
    table = crosswalk("ecgfounder", target)
    table = table[table["tier"].isin(("exact", "broader", "composite"))].drop_duplicates("code")
    conds = [Condition(id=r.code, name=f"{r.name} ({r.code})", code_system=_TARGET_SYSTEM.get(target, "free-text"),
                       code=r.code) for r in table.itertuples(index=False)]
    return LabelSpace(conds, name=f"statements-{target}")


def statement_label_table(records, target: str = "ecgfounder", include_serial: bool = False):
    """Read every ECG under `records` and label it from its machine statements.

    Args:
        records: folder of ECG files (searched recursively) or `{record_id: path}`.
        target (`str`): `"ecgfounder"` (default), `"snomed"` or `"ptbxl"`.
        include_serial (`bool`): see `label_statements`.

    Returns:
        `(table, label_space, statements, coverage)`: `table` has `record_id`, `path`, `patient_id`, `age`, `sex` and
        one 0/1 column per condition id; `statements` one row per statement (`record_id`, `text`, `normalized`,
        `kind`, `labels`); `coverage` the `statement_coverage` summary plus `unreadable` (files that could not be
        read, with the reason). Files without statements get all-zero rows and are counted in `coverage`.
    """
    from ..io import read_ecg
    from .builder import find_record_files

    paths = records if isinstance(records, dict) else find_record_files(records)
    space = statement_label_space(target)
    rows, listing, results, unreadable = [], [], [], []
    for rid, path in sorted(paths.items()):
        try:
            meta = read_ecg(path).metadata
        except (OSError, ValueError) as err:
            unreadable.append({"record_id": rid, "path": str(path), "reason": str(err)})
            continue
        result = label_statements(meta.get("diagnosis_statements") or [], target=target,
                                  include_serial=include_serial)
        results.append(result)
        present = set(result.labels)
        row = {"record_id": rid, "path": str(path), "patient_id": meta.get("patient_id") or rid,
               "age": meta.get("age"), "sex": meta.get("sex") or ""}
        row.update({c.id: int(c.id in present) for c in space})
        rows.append(row)
        listing += [{"record_id": rid, "text": m.text, "normalized": m.normalized, "kind": m.kind,
                     "labels": " | ".join(m.labels)} for m in result.statements]
    if not rows:
        where = records if not isinstance(records, dict) else f"{len(paths)} given files"
        raise ValueError(f"No readable ECG file in {where}" + (f" ({unreadable[0]['reason']})" if unreadable else ""))
    coverage = statement_coverage(results)
    coverage["records_without_statements"] = sum(1 for r in results if not r.statements)
    coverage["unreadable"] = unreadable
    coverage["target"] = target
    columns = ["record_id", "text", "normalized", "kind", "labels"]
    return pd.DataFrame(rows), space, pd.DataFrame(listing, columns=columns), coverage


def write_statement_report(out, statements: pd.DataFrame, coverage: dict) -> list[Path]:
    """`statements.csv` (every statement, its kind and labels) and `statement_coverage.json` into `out`."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    statements.to_csv(out / "statements.csv", index=False)
    (out / "statement_coverage.json").write_text(json.dumps(coverage, indent=1, default=str), encoding="utf-8")
    return [out / "statements.csv", out / "statement_coverage.json"]
