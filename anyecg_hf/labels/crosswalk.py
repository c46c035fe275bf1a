"""Crosswalks between label vocabularies, shipped as versioned CSV package data (`anyecg_hf/labels/data/`).

`crosswalk("ecgfounder", "snomed")` maps the 150 ECGFounder labels (GE 12SL statement texts) to SNOMED-CT codes of
the PhysioNet/CinC 2020/2021 vocabulary; `crosswalk("ecgfounder", "ptbxl")` to PTB-XL's 71 SCP-ECG statements, and
`"ptbxl-subdiagnostic"` / `"ptbxl-superdiagnostic"` to the benchmark's diagnostic sub- and superclasses (derived
from the statement rows through PTB-XL's `scp_statements.csv`).

Each row: `label` (an ECGFounder label, exactly as the model names it), `code_system`, `code`, `name` (the target's
name in its source table), `tier`, `source` (the table the code and name come from), `note` (why, when not obvious).
`tier` says how the target relates to the label:

- `exact`: the same finding.
- `broader`: the target is a broader finding that the label implies (MARKED SINUS BRADYCARDIA -> bradycardia).
- `composite`: the label names several findings; the row is one of them (RBBB AND LAFB -> RBBB).
- `narrower`: the target is narrower than the label; the label does not imply it (PREMATURE ECTOPIC COMPLEXES ->
  premature atrial contraction). Not used for evaluation unless asked.
- `none`: explicitly no target, with the reason in `note`: serial-comparison statements ("... NOW EVIDENT IN",
  "QT HAS LENGTHENED") describe a change against an earlier ECG; overall interpretations, modifiers and fragments of
  12SL lines, and findings the vocabulary has no code for.

The tiers are our curation (the codes and names are the sources' facts); `data/SOURCES.md` names the sources and
`data/crosswalks.json` the version and checksum of each file.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources

import pandas as pd

TIERS = ("exact", "broader", "composite", "narrower", "none")
# Tiers whose target the label implies: a model label in these tiers is evidence for the target condition.
IMPLIED_TIERS = ("exact", "broader", "composite")
TARGETS = ("snomed", "ptbxl", "ptbxl-subdiagnostic", "ptbxl-superdiagnostic")
COLUMNS = ("label", "code_system", "code", "name", "tier", "source", "note")

# CinC 2021 scored classes that no ECGFounder label implies, and why (the other 23 are mapped; a test checks both).
CINC_SCORED_UNMAPPABLE = {
    "365413008": "poor R wave progression: 12SL folds it into infarct statements (SEPTAL / ANTERIOR INFARCT) and none "
                 "of the 150 labels states it alone",
    "164917005": "Q wave abnormal: 12SL reports Q waves only inside infarct statements, which also fire on R-wave "
                 "and ST criteria, so no label implies an abnormal Q wave",
    "59931005": "T wave inversion: the 150 labels name it only in serial comparisons (T WAVE INVERSION NOW EVIDENT "
                "IN, ...), which describe a change against an earlier ECG",
}

_FILES = {"snomed": "ecgfounder_to_snomed.csv", "ptbxl": "ecgfounder_to_ptbxl.csv"}
_ALIASES = {"snomed-ct": "snomed", "cinc": "snomed", "scp": "ptbxl", "ptbxl-subclass": "ptbxl-subdiagnostic",
            "ptbxl-superclass": "ptbxl-superdiagnostic"}


def _data_file(name: str):
    return resources.files("anyecg_hf.labels").joinpath(f"data/{name}")


@lru_cache(maxsize=1)
def manifest() -> dict:
    """`data/crosswalks.json`: per packaged file its `version`, `sha256` and `sources`."""
    return json.loads(_data_file("crosswalks.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def read_packaged_table(name: str) -> pd.DataFrame:
    """A packaged CSV, checked against the checksum of `crosswalks.json` (an edited file must get a new version)."""
    raw = _data_file(name).read_bytes()
    entry = manifest()["files"].get(name)
    if entry is None:
        raise KeyError(f"{name} is not listed in anyecg_hf/labels/data/crosswalks.json")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != entry["sha256"]:
        raise ValueError(f"anyecg_hf/labels/data/{name} does not match its checksum in crosswalks.json "
                         f"({digest} != {entry['sha256']}): the file was edited; bump its version and checksum.")
    from io import StringIO

    return pd.read_csv(StringIO(raw.decode("utf-8")), dtype=str, keep_default_na=False)


def ptbxl_statements() -> pd.DataFrame:
    """PTB-XL's 71 SCP-ECG statements (`code`, `description`, `diagnostic`, `form`, `rhythm`, `diagnostic_class`,
    `diagnostic_subclass`), as in the dataset's `scp_statements.csv` (v1.0.1+)."""
    return read_packaged_table("ptbxl_scp_statements.csv")


def _derived_ptbxl(level: str) -> pd.DataFrame:
    """Statement rows lifted to diagnostic subclasses or superclasses: a label that implies a statement implies the
    statement's class (tier `broader` unless the class is the statement itself)."""
    statements = ptbxl_statements().set_index("code")
    column = "diagnostic_subclass" if level == "ptbxl-subdiagnostic" else "diagnostic_class"
    rows = []
    for row in _base("ptbxl").itertuples(index=False):
        if row.tier == "none" or statements.loc[row.code, "diagnostic"] != "1":
            continue
        group = statements.loc[row.code, column]
        tier = row.tier if group == row.code or row.tier in ("composite", "narrower") else "broader"
        rows.append({"label": row.label, "code_system": "SCP-ECG", "code": group, "name": group, "tier": tier,
                     "source": "PTB-XL scp_statements.csv", "note": f"via statement {row.code}"})
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    # one row per (label, class): the strongest tier wins
    out["_rank"] = out["tier"].map({t: i for i, t in enumerate(TIERS)})
    out = out.sort_values(["_rank"], kind="stable").drop_duplicates(["label", "code"]).drop(columns="_rank")
    return out.sort_index().reset_index(drop=True)


@lru_cache(maxsize=None)
def _base(target: str) -> pd.DataFrame:
    return read_packaged_table(_FILES[target])


def crosswalk(source: str, target: str) -> pd.DataFrame:
    """The crosswalk table from `source` labels to `target` codes.

    Args:
        source (`str`): `"ecgfounder"` (the 150 labels of the public ECGFounder checkpoints).
        target (`str`): `"snomed"` (CinC 2020/2021 SNOMED-CT codes), `"ptbxl"` (PTB-XL SCP statements),
            `"ptbxl-subdiagnostic"` or `"ptbxl-superdiagnostic"`.

    Returns:
        `pandas.DataFrame` with columns `label, code_system, code, name, tier, source, note` (strings; `code` and
        `name` are empty on `none` rows); `df.attrs["version"]` is the file's version.
    """
    if source.lower() != "ecgfounder":
        raise ValueError(f"No crosswalk from {source!r}; available: 'ecgfounder'.")
    key = _ALIASES.get(target.lower(), target.lower())
    if key not in TARGETS:
        raise ValueError(f"No crosswalk to {target!r}; available: {', '.join(TARGETS)}.")
    table = _base(key).copy() if key in _FILES else _derived_ptbxl(key)
    table.attrs["version"] = manifest()["files"][_FILES["ptbxl" if key.startswith("ptbxl") else key]]["version"]
    table.attrs["name"] = f"ecgfounder->{key}"
    return table


def load_crosswalk(path) -> pd.DataFrame:
    """A user's crosswalk CSV (columns `label`, `code`, optional `code_system`, `name`, `tier` (default `exact`),
    `source`, `note`), validated: a clear `ValueError` names the file and row of a bad tier or an empty label."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot read crosswalk {path}: {err}") from err
    missing = {"label", "code"} - set(table.columns)
    if missing:
        raise ValueError(f"Crosswalk {path} needs columns 'label' and 'code' (missing {sorted(missing)}; "
                         f"found {list(table.columns)}).")
    for column, default in (("code_system", ""), ("name", ""), ("tier", "exact"), ("source", str(path)), ("note", "")):
        if column not in table.columns:
            table[column] = default
    table["tier"] = table["tier"].replace("", "exact")
    for i, row in table.iterrows():
        where = f"Crosswalk {path}, line {i + 2}"
        if not row["label"].strip():
            raise ValueError(f"{where}: empty label.")
        if row["tier"] not in TIERS:
            raise ValueError(f"{where}: tier {row['tier']!r} is not one of {', '.join(TIERS)}.")
        if row["tier"] != "none" and not row["code"].strip():
            raise ValueError(f"{where}: empty code (use tier 'none' for a label without a target).")
    table = table[list(COLUMNS)]
    table.attrs["version"] = "user"
    table.attrs["name"] = str(path)
    return table


def resolve_crosswalk(label_map) -> pd.DataFrame:
    """`--label-map` value -> table: a target name (`snomed`, `ptbxl`, ...), a CSV path, or a DataFrame.

    `ptbxl` covers PTB-XL's statements and their diagnostic sub- and superclasses (first row per label and code)."""
    if isinstance(label_map, pd.DataFrame):
        return label_map
    text = str(label_map)
    if text.lower().endswith(".csv"):
        return load_crosswalk(text)
    table = crosswalk("ecgfounder", text)
    if _ALIASES.get(text.lower(), text.lower()) == "ptbxl":
        # a PTB-XL dataset may be built at statement, subclass or superclass level: match all three
        parts = [table] + [crosswalk("ecgfounder", t) for t in ("ptbxl-subdiagnostic", "ptbxl-superdiagnostic")]
        attrs = dict(table.attrs)
        table = pd.concat(parts, ignore_index=True).drop_duplicates(["label", "code"])
        table.attrs.update(attrs)
    return table
