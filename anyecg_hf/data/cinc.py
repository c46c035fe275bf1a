"""PhysioNet/CinC Challenge 2020/2021 layout: WFDB records whose headers carry SNOMED-CT codes in `# Dx:` lines.

`cinc_label_table(folder)` turns the headers into a label table (record_id, codes, age, sex) without reading any
signal; `build_cinc(folder)` builds the dataset from it. The Challenge scored 30 codes merged into 26 classes
(`CINC2021_SCORED`, with the equivalent codes of `CINC2021_EQUIVALENT_CODES`); the default label space is every
code present in the folder, most frequent first.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from ..modeling.label_space import Condition, LabelSpace
from .builder import build_ecg_dataset

# SNOMED-CT code -> (abbreviation, name) for the Challenge's scored classes and other common codes, as the Challenge's
# dx_mapping_scored.csv / dx_mapping_unscored.csv name them (physionetchallenges/evaluation-2021, BSD-2-Clause).
SNOMED_NAMES = {
    "164889003": ("AF", "atrial fibrillation"),
    "164890007": ("AFL", "atrial flutter"),
    "6374002": ("BBB", "bundle branch block"),
    "426627000": ("Brady", "bradycardia"),
    "733534002": ("CLBBB", "complete left bundle branch block"),
    "164909002": ("LBBB", "left bundle branch block"),
    "713427006": ("CRBBB", "complete right bundle branch block"),
    "59118001": ("RBBB", "right bundle branch block"),
    "270492004": ("IAVB", "1st degree av block"),
    "713426002": ("IRBBB", "incomplete right bundle branch block"),
    "39732003": ("LAD", "left axis deviation"),
    "445118002": ("LAnFB", "left anterior fascicular block"),
    "251146004": ("LQRSV", "low qrs voltages"),
    "698252002": ("NSIVCB", "nonspecific intraventricular conduction disorder"),
    "10370003": ("PR", "pacing rhythm"),
    "365413008": ("PRWP", "poor R wave progression"),
    "427172004": ("PVC", "premature ventricular contractions"),
    "17338001": ("VPB", "ventricular premature beats"),
    "164947007": ("LPR", "prolonged pr interval"),
    "111975006": ("LQT", "prolonged qt interval"),
    "164917005": ("QAb", "qwave abnormal"),
    "47665007": ("RAD", "right axis deviation"),
    "427393009": ("SA", "sinus arrhythmia"),
    "426177001": ("SB", "sinus bradycardia"),
    "426783006": ("NSR", "sinus rhythm"),
    "427084000": ("STach", "sinus tachycardia"),
    "284470004": ("PAC", "premature atrial contraction"),
    "63593006": ("SVPB", "supraventricular premature beats"),
    "164934002": ("TAb", "t wave abnormal"),
    "59931005": ("TInv", "t wave inversion"),
    # frequent unscored codes
    "164884008": ("VEB", "ventricular ectopics"),
    "55930002": ("STC", "st changes"),
    "428750005": ("NSSTTA", "nonspecific st t abnormality"),
    "164873001": ("LVH", "left ventricular hypertrophy"),
    "55827005": ("LVHV", "left ventricular high voltage"),
    "253352002": ("LAA", "left atrial abnormality"),
    "713422000": ("ATach", "atrial tachycardia"),
    "89792004": ("RVH", "right ventricular hypertrophy"),
    "67741000119109": ("LAE", "left atrial enlargement"),
    "426434006": ("AnMIs", "anterior ischemia"),
    "251170000": ("BPAC", "blocked premature atrial contraction"),
    "251187003": ("AED", "atrial escape beat"),
    "54329005": ("AnMI", "anterior myocardial infarction"),
    "164930006": ("STIAb", "st interval abnormal"),
    "164865005": ("MI", "myocardial infarction"),
    "164861001": ("MIs", "myocardial ischemia"),
}

# Codes the Challenge scored as the same class (second -> first).
CINC2021_EQUIVALENT_CODES = {"733534002": "164909002", "713427006": "59118001", "63593006": "284470004", "17338001": "427172004"}

# The 26 scored classes, one code each (equivalents merged onto the code named in `CINC2021_EQUIVALENT_CODES`), in the
# row order of the Challenge's weights.csv: AF, AFL, BBB, Brady, CLBBB|LBBB, CRBBB|RBBB, IAVB, IRBBB, LAD, LAnFB, LPR,
# LQRSV, LQT, NSIVCB, NSR, PAC|SVPB, PR, PRWP, PVC|VPB, QAb, RAD, SA, SB, STach, TAb, TInv.
CINC2021_SCORED = (
    "164889003", "164890007", "6374002", "426627000", "164909002", "59118001", "270492004", "713426002", "39732003",
    "445118002", "164947007", "251146004", "111975006", "698252002", "426783006", "284470004", "10370003", "365413008",
    "427172004", "164917005", "47665007", "427393009", "426177001", "427084000", "164934002", "59931005",
)


def snomed_label_space(codes, name: str | None = None) -> LabelSpace:
    """A SNOMED-CT label space over `codes` (ids = abbreviations when known, else the code)."""
    conds, seen = [], set()
    for code in codes:
        abbr, full = SNOMED_NAMES.get(str(code), (str(code), f"SNOMED {code}"))
        cid = abbr if abbr not in seen else str(code)
        seen.add(cid)
        conds.append(Condition(id=cid, name=full, code_system="SNOMED-CT", code=str(code)))
    return LabelSpace(conds, name=name)


def cinc2021_scored_label_space() -> LabelSpace:
    """The 26 classes scored in the PhysioNet/CinC Challenge 2021."""
    return snomed_label_space(CINC2021_SCORED, name="cinc2021-scored")


def _header_comments(hea: Path) -> dict:
    meta = {}
    for line in hea.read_text(errors="replace").splitlines():
        if not line.startswith("#"):
            continue
        key, sep, value = line[1:].partition(":")
        if sep:
            meta[key.strip().lower()] = value.strip()
    return meta


def cinc_label_table(folder, merge_equivalent: bool = False) -> pd.DataFrame:
    """The label table of a CinC folder from its headers' `# Dx`, `# Age` and `# Sex` lines.

    Columns: `record_id`, `codes` (comma-separated SNOMED codes), `age`, `sex`, `path` (header, relative to
    `folder`). The CinC data have no patient ids, so each record is its own patient. Headers without a `# Dx` line
    get an empty `codes` cell (no condition).

    Args:
        merge_equivalent (`bool`): replace codes the Challenge scored as equivalent (`CINC2021_EQUIVALENT_CODES`).
    """
    folder = Path(folder)
    rows = []
    for hea in sorted(folder.rglob("*.hea")):
        meta = _header_comments(hea)
        codes = [c.strip() for c in meta.get("dx", "").split(",") if c.strip() and c.strip().lower() != "unknown"]
        if merge_equivalent:
            codes = list(dict.fromkeys(CINC2021_EQUIVALENT_CODES.get(c, c) for c in codes))
        age = meta.get("age", "")
        rows.append({
            "record_id": hea.stem,
            "codes": ",".join(codes),
            "age": "" if age.lower() in ("", "nan", "unknown") else age,
            "sex": {"male": "M", "female": "F", "m": "M", "f": "F"}.get(meta.get("sex", "").lower(), ""),
            "path": str(hea.relative_to(folder)),
        })
    if not rows:
        raise FileNotFoundError(f"No WFDB header (.hea) found under {folder}.")
    return pd.DataFrame(rows)


def build_cinc(
    folder,
    label_space: LabelSpace | str | None = None,
    *,
    merge_equivalent: bool = False,
    unknown_codes: str = "ignore",
    **kwargs,
):
    """Build a dataset from a CinC 2020/2021 folder (WFDB, SNOMED `# Dx`).

    Args:
        folder: the records folder (searched recursively).
        label_space: a `LabelSpace`, `"scored"` (the 26 CinC 2021 classes, equivalents merged) or `None` (every code
            in the folder, most frequent first, named with `SNOMED_NAMES`).
        merge_equivalent (`bool`): merge the Challenge's equivalent codes (always on for `"scored"`).
        unknown_codes (`str`): codes outside the label space are `"ignore"`d (default; counted in the build report)
            or an `"error"`.
        kwargs: passed to `build_ecg_dataset` (`split`, `storage`, `num_proc`, `cache_dir`, `return_report`, ...).
    """
    if isinstance(label_space, str) and label_space == "scored":
        label_space, merge_equivalent = cinc2021_scored_label_space(), True
    table = cinc_label_table(folder, merge_equivalent=merge_equivalent)
    if label_space is None:
        counts = Counter(c for cell in table["codes"] for c in cell.split(",") if c)
        label_space = snomed_label_space(sorted(counts, key=lambda c: (-counts[c], c)), name="cinc-codes")
    return build_ecg_dataset(folder, table, label_space, unknown_codes=unknown_codes, scan=False, **kwargs)
