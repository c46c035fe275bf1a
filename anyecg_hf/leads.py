"""Canonical ECG lead names, shared by the readers (`anyecg_hf.io`) and the feature extractor.

Every reader returns leads under these names and the feature extractor reorders to a model's `lead_names`,
so aliases are resolved in exactly one place.
"""

from __future__ import annotations

STANDARD_12_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Leads that are not part of the standard 12 but appear in exports (Frank / Holter); readers keep them,
# the feature extractor drops them.
EXTRA_LEADS = ("X", "Y", "Z", "V3R", "V4R", "V5R", "V7", "V8", "V9")

_ALIASES = {
    # limb leads
    "1": "I", "LEADI": "I", "LEAD_I": "I", "DI": "I",
    "2": "II", "LEADII": "II", "LEAD_II": "II", "DII": "II", "MLII": "II", "ML2": "II",
    "3": "III", "LEADIII": "III", "LEAD_III": "III", "DIII": "III",
    # augmented leads (any case)
    "AVR": "aVR", "AVL": "aVL", "AVF": "aVF",
    # HL7 aECG / DICOM style codes
    "MDC_ECG_LEAD_I": "I", "MDC_ECG_LEAD_II": "II", "MDC_ECG_LEAD_III": "III",
    "MDC_ECG_LEAD_AVR": "aVR", "MDC_ECG_LEAD_AVL": "aVL", "MDC_ECG_LEAD_AVF": "aVF",
}
for _i in range(1, 10):
    _ALIASES[f"V{_i}"] = f"V{_i}"
    _ALIASES[f"C{_i}"] = f"V{_i}"  # European chest-lead naming
    _ALIASES[f"MDC_ECG_LEAD_V{_i}"] = f"V{_i}"
for _name in STANDARD_12_LEADS:
    _ALIASES[_name.upper()] = _name
for _name in EXTRA_LEADS:
    _ALIASES[_name.upper()] = _name
    _ALIASES[f"MDC_ECG_LEAD_{_name.upper()}"] = _name


def canonical_lead_name(name: str) -> str:
    """Return the canonical name of a lead (`"avr"` -> `"aVR"`, `"MLII"` -> `"II"`, `"C1"` -> `"V1"`).

    Inverted leads (`"-aVR"`) are rejected rather than silently treated as their positive twin.

    Raises:
        ValueError: for an unknown or inverted lead name.
    """
    raw = str(name).strip()
    key = raw.upper().replace(" ", "")
    if key.startswith("-"):
        raise ValueError(
            f"Inverted lead {raw!r} is not supported: negate the signal and name it {raw[1:]!r} instead."
        )
    key = key.replace("-", "_") if key.startswith("MDC") else key.replace("_", "").replace("-", "")
    if key.startswith("LEAD") and key not in _ALIASES:
        key = key[4:]
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(
        f"Unknown lead name {raw!r}; expected one of {', '.join(STANDARD_12_LEADS + EXTRA_LEADS)} "
        "(case-insensitive; aliases such as MLII, C1..C6 and MDC_ECG_LEAD_* are accepted)."
    )


def canonical_lead_names(names) -> list[str]:
    """Canonicalise a sequence of lead names; raises `ValueError` on unknown or duplicate leads."""
    out = [canonical_lead_name(n) for n in names]
    seen = set()
    for raw, name in zip(names, out):
        if name in seen:
            raise ValueError(f"Lead {name!r} appears twice (as {raw!r}); lead names must be unique.")
        seen.add(name)
    return out
