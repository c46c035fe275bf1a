"""Model cards (README.md with a Hugging Face YAML header) carrying the evaluation summary of a model.

`write_model_card(folder, reports, config)` writes a complete card for a saved model folder; when a README.md
already exists, only the evaluation section between the markers below is replaced (or the section is appended),
so hand-written text survives re-evaluation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from .formatting import fmt, horizon_label, markdown_table, threshold_rule

__all__ = ["write_model_card", "model_card_section", "RESEARCH_USE_STATEMENT", "SECTION_START", "SECTION_END"]

SECTION_START = "<!-- anyecg-evaluation:start -->"
SECTION_END = "<!-- anyecg-evaluation:end -->"

RESEARCH_USE_STATEMENT = (
    "**For research use only. This model is not a medical device**: it has not been cleared or approved by any "
    "regulator (FDA, EU MDR, ...) and must not be used to diagnose, treat or triage patients, or to replace the "
    "judgement of a qualified clinician."
)

DEFAULT_TAGS = ["ecg", "electrocardiogram", "biosignals", "medical", "time-series", "anyecg", "ecgfounder"]

_TRAINING_PLACEHOLDER = (
    "_To be completed by the model's author: data source(s), population (countries, sites, age and sex mix), "
    "collection dates, inclusion and exclusion criteria, how labels were derived (codes, time windows), and the "
    "train / validation / test split (by patient)._"
)


def _split_reports(reports, diagnosis_report, risk_report):
    for rep in [] if reports is None else (reports if isinstance(reports, (list, tuple)) else [reports]):
        kind = getattr(rep, "kind", None)
        if kind == "diagnosis" and diagnosis_report is None:
            diagnosis_report = rep
        elif kind == "risk" and risk_report is None:
            risk_report = rep
        elif kind not in ("diagnosis", "risk"):
            raise ValueError(f"Not an evaluation report: {type(rep).__name__}.")
    return diagnosis_report, risk_report


def _diagnosis_section(rep, top_n, digits, dataset_name):
    parts = ["### Diagnosis", ""]
    if dataset_name:
        parts += [f"Evaluated on {_cohort(dataset_name)}.", ""]
    parts += [rep.summary_markdown(digits), ""]
    best, worst = rep.top(top_n), rep.bottom(top_n)
    if len(best):
        parts += [f"Best {len(best)} conditions by AUROC:", "", markdown_table(rep.formatted_table(best, digits)), ""]
    if len(rep.ranked()) > top_n and len(worst):
        parts += [f"Worst {len(worst)} conditions by AUROC:", "", markdown_table(rep.formatted_table(worst, digits)),
                  ""]
    undefined = rep.table[~rep.table["defined"]]
    if len(undefined):
        names = ", ".join(undefined["name"].astype(str).head(20))
        more = f" and {len(undefined) - 20} more" if len(undefined) > 20 else ""
        parts += [f"Not evaluable here (no positives or no negatives): {names}{more}.", ""]
    return parts


def _risk_section(rep, top_n, digits, dataset_name):
    parts = ["### Future risk", ""]
    if dataset_name:
        parts += [f"Evaluated on {_cohort(dataset_name)}.", ""]
    parts += [rep.summary_markdown(digits), ""]
    best = rep.top(top_n)
    if len(best):
        parts += [f"Best {len(best)} conditions by Harrell's C:", "", markdown_table(rep.formatted_table(best, digits)),
                  ""]
    if len(rep.ranked()) > top_n:
        worst = rep.bottom(top_n)
        parts += [f"Worst {len(worst)} conditions by Harrell's C:", "",
                  markdown_table(rep.formatted_table(worst, digits)), ""]
    return parts


def model_card_section(diagnosis_report=None, risk_report=None, top_n: int = 10, digits: int = 3,
                       dataset_name: str | None = None, markers: bool = True) -> str:
    """The "Evaluation" section of a model card: summaries and best/worst conditions tables.

    Args:
        diagnosis_report (`DiagnosisReport`, *optional*), risk_report (`RiskReport`, *optional*): reports to show.
        top_n (`int`, *optional*, defaults to 10): rows of the best / worst tables.
        digits (`int`, *optional*, defaults to 3): decimals.
        dataset_name (`str`, *optional*): name of the evaluation cohort.
        markers (`bool`, *optional*, defaults to `True`): wrap the section in the HTML comments that let
            `write_model_card` replace it later.
    """
    lines = ["## Evaluation", ""]
    if diagnosis_report is None and risk_report is None:
        lines += ["_No evaluation has been recorded for this model yet._", ""]
    if diagnosis_report is not None:
        lines += _diagnosis_section(diagnosis_report, top_n, digits, dataset_name)
    if risk_report is not None:
        lines += _risk_section(risk_report, top_n, digits, dataset_name)
    lines += [
        "Conditions whose metric is undefined (no positives, no negatives or no events in the evaluation data) are "
        "reported as undefined, never as 0.5. " + _threshold_note(diagnosis_report),
    ]
    text = "\n".join(lines).rstrip() + "\n"
    return f"{SECTION_START}\n{text}{SECTION_END}\n" if markers else text


def _threshold_note(rep) -> str:
    """Which threshold rule and split gave the reported sensitivity / specificity."""
    if rep is None:
        return ""
    rule = threshold_rule(rep.settings)
    if "optimistic" in rule:
        return (f"Operating thresholds: {rule}: sensitivity and specificity at thresholds chosen on the data they are "
                "reported on are optimistic; choose them on separate validation data for deployment studies.")
    return f"Operating thresholds: {rule}; sensitivity and specificity are reported on the evaluation data."


def _label_space_table(space, limit=None) -> str:
    rows = space.to_list()
    frame = pd.DataFrame(
        {
            "#": range(len(rows)),
            "id": [r["id"] for r in rows],
            "name": [r["name"] for r in rows],
            "code system": [r["code_system"] for r in rows],
            "code": [r["code"] or "" for r in rows],
            "threshold": [fmt(r["threshold"]) if r["threshold"] is not None else "0.5 (default)" for r in rows],
        }
    )
    return markdown_table(frame if limit is None else frame.head(limit))


def _load_config(config, folder):
    if config is not None or folder is None:
        return config
    if (folder / "config.json").exists():
        from anyecg_hf.modeling import AnyECGConfig

        try:
            return AnyECGConfig.from_pretrained(folder)
        except (OSError, ValueError):
            return None
    return None


def _model_details(config) -> list[str]:
    if config is None:
        return ["_Model configuration not given._", ""]
    lines = []
    leads = getattr(config, "lead_names", None)
    if leads:
        lines.append(f"- Input: {len(leads)} lead(s) ({', '.join(leads)}), {config.sampling_rate} Hz, "
                     f"{config.num_samples} samples ({config.num_samples / config.sampling_rate:g} s) per window.")
    if getattr(config, "filter_list", None):
        lines.append(f"- Backbone: ECGFounder-style 1-D RegNet, {len(config.filter_list)} stages, embedding size "
                     f"{config.filter_list[-1]}.")
    space = getattr(config, "label_space", None)
    if space is not None:
        lines.append(f"- Diagnosis head: {len(space)} conditions (multi-label, sigmoid probabilities).")
    risk = getattr(config, "risk_label_space", None)
    if risk is not None:
        horizons = ", ".join(horizon_label(h) for h in getattr(config, "risk_horizons", []))
        lines.append(f"- Risk head ({getattr(config, 'risk_head_type', 'survival')}): {len(risk)} conditions, "
                     f"horizons {horizons}. Cumulative incidence is 1 - S(t | x) under cause-specific hazards "
                     "(competing deaths censored).")
    else:
        lines.append("- No risk head: this model predicts current diagnoses only. Risk heads come from fine-tuning on "
                     "a cohort with follow-up.")
    version = getattr(config, "anyecg_version", None)
    if version:
        lines.append(f"- anyecg_hf format version: {version}.")
    return lines + [""]


def _label_spaces(config, max_inline=20) -> list[str]:
    if config is None:
        return []
    out = ["## Label spaces", ""]
    for title, space in (("Diagnosis", getattr(config, "label_space", None)),
                         ("Risk", getattr(config, "risk_label_space", None))):
        if space is None:
            continue
        name = f" ({space.name})" if getattr(space, "name", None) else ""
        out += [f"### {title}{name}: {len(space)} conditions", ""]
        if len(space) <= max_inline:
            out += [_label_space_table(space), ""]
        else:
            out += ["<details>", f"<summary>All {len(space)} conditions</summary>", "", _label_space_table(space), "",
                    "</details>", ""]
    return out


_SPLIT = re.compile(r"^(?P<name>.*?)\s*\[(?P<split>[A-Za-z0-9_.-]+)\]\s*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def dataset_reference(dataset_name: str) -> tuple[str, str | None]:
    """`(name, split)` for a model card's model-index from a cohort name such as `"/tmp/x/cinc_ds [test]"`: the
    split comes out of the brackets, and a local path is reduced to its folder name, so no machine's path (or
    temporary folder) is published. A Hub dataset id (`org/name`) is kept."""
    m = _SPLIT.match(dataset_name)
    name, split = (m.group("name"), m.group("split")) if m else (dataset_name, None)
    return public_name(name, "evaluation data"), split


def public_name(path_or_id, default: str = "local data") -> str:
    """What a model card may say of a model or dataset: a Hub id (`org/name`) as it is, a local path reduced to its
    folder name, so that no machine's path (or temporary folder) is published."""
    name = str(path_or_id).strip()
    if not _HUB_ID.match(name) or os.path.exists(name) or name.startswith(("/", "./", "../", "~")):
        name = Path(name.rstrip("/\\")).name or default
    return name


def _cohort(dataset_name: str) -> str:
    name, split = dataset_reference(dataset_name)
    return f"**{name}**" + (f" ({split} split)" if split else "")


def _header(license, tags, base_model, datasets, model_name, diagnosis_report, dataset_name):
    from huggingface_hub import ModelCardData

    kwargs = dict(license=license, library_name="transformers", tags=tags)
    if base_model:
        kwargs["base_model"] = base_model
    if datasets:
        kwargs["datasets"] = list(datasets)
    if diagnosis_report is not None and dataset_name:
        from huggingface_hub import EvalResult

        s = diagnosis_report.summary
        name, split = dataset_reference(dataset_name)
        results = []
        for metric, value in (("macro_auroc", s.get("macro_auroc")), ("micro_auroc", s.get("micro_auroc")),
                              ("macro_auprc", s.get("macro_auprc"))):
            if value is not None and value == value:
                results.append(EvalResult(task_type="ecg-classification", task_name="ECG diagnosis (multi-label)",
                                          dataset_type=name, dataset_name=name, dataset_split=split, metric_type=metric,
                                          metric_name=metric.replace("_", " "), metric_value=round(float(value), 4)))
        if results:
            kwargs["model_name"] = model_name
            kwargs["eval_results"] = results
    return ModelCardData(**kwargs).to_yaml()


def write_model_card(
    save_directory_or_path,
    reports=None,
    config=None,
    *,
    diagnosis_report=None,
    risk_report=None,
    model_name: str | None = None,
    base_model: str | None = None,
    intended_use: str | None = None,
    training_data: str | None = None,
    license: str = "mit",
    tags=None,
    datasets=None,
    dataset_name: str | None = None,
    top_n: int = 10,
    overwrite: bool = False,
) -> Path:
    """Write (or update) the README.md model card of a saved model.

    Args:
        save_directory_or_path (`str` or `os.PathLike`): a model folder (README.md is written inside) or a `.md` path.
        reports (`DiagnosisReport`, `RiskReport` or a list of them, *optional*): evaluation results to include.
        config (`AnyECGConfig`, *optional*): the model's configuration (label spaces, input format); read from
            `config.json` in the folder when omitted.
        diagnosis_report, risk_report (*optional*): the reports, by keyword.
        model_name (`str`, *optional*): title (defaults to the folder name).
        base_model (`str`, *optional*): Hub id of the base model (e.g. the ECGFounder checkpoint repository).
        intended_use (`str`, *optional*): replaces the default intended-use paragraph.
        training_data (`str`, *optional*): description of the training data (a placeholder asks for it otherwise).
        license (`str`, *optional*, defaults to `"mit"`): license id for the YAML header. The default is the licence
            of the ECGFounder weights (PKUDigitalHealth/ECGFounder, MIT) that AnyECG models are fine-tuned from; a
            model trained from scratch may state its own.
        tags (list of `str`, *optional*): extra Hub tags (added to the ECG defaults).
        datasets (list of `str`, *optional*): Hub dataset ids for the YAML header.
        dataset_name (`str`, *optional*): name of the evaluation cohort (adds a `model-index` to the header, with a
            local path reduced to its folder name and a trailing `[split]` as the split: `dataset_reference`).
        top_n (`int`, *optional*, defaults to 10): rows of the best / worst tables.
        overwrite (`bool`, *optional*, defaults to `False`): rewrite an existing README.md entirely. Otherwise an
            existing card keeps its text: the marked evaluation section is replaced, or appended if absent.

    Returns:
        The path of the README.md written.
    """
    diagnosis_report, risk_report = _split_reports(reports, diagnosis_report, risk_report)
    target = Path(os.fspath(save_directory_or_path))
    if target.suffix.lower() == ".md":
        folder, path = None, target
    else:
        folder, path = target, target / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    section = model_card_section(diagnosis_report, risk_report, top_n=top_n, dataset_name=dataset_name)

    if path.exists() and not overwrite:
        text = path.read_text(encoding="utf-8")
        if SECTION_START in text and SECTION_END in text:
            head, rest = text.split(SECTION_START, 1)
            tail = rest.split(SECTION_END, 1)[1].lstrip("\n")
            text = head + section + ("\n" + tail if tail else "")
        else:
            text = text.rstrip("\n") + "\n\n" + section
        if RESEARCH_USE_STATEMENT not in text:
            text = text.rstrip("\n") + "\n\n" + RESEARCH_USE_STATEMENT + "\n"
        path.write_text(text, encoding="utf-8")
        return path

    config = _load_config(config, folder)
    name = model_name or (folder.name if folder is not None else "AnyECG model")
    all_tags = list(dict.fromkeys(DEFAULT_TAGS + list(tags or [])))
    header = _header(license, all_tags, base_model, datasets, name, diagnosis_report, dataset_name)
    intended = intended_use or (
        "Research on electrocardiogram (ECG) representation learning: estimating the presence of diagnoses from "
        "a resting ECG and, where a risk head is present, the future risk of conditions over the stated horizons; "
        "benchmarking, fine-tuning on new cohorts and labels, and studying what ECGs encode."
    )
    lines = [
        "---", header.strip(), "---", "",
        f"# {name}", "",
        "An ECG foundation model in the Hugging Face format of `anyecg_hf` (ECGFounder backbone with AnyECG-style "
        "heads).", "",
        f"> {RESEARCH_USE_STATEMENT}", "",
        "## Intended use", "", intended, "",
        "Out of scope: clinical decision making, screening or triage without a prospective validation and regulatory "
        "clearance; populations, devices, lead sets or sampling rates unlike the training data without local "
        "evaluation.", "",
        "## Model details", "", *_model_details(config),
        "## Training data", "", training_data or _TRAINING_PLACEHOLDER, "",
        *_label_spaces(config),
        section.rstrip("\n"), "",
        "## How to use", "",
        "```python",
        "from transformers import pipeline",
        f'clf = pipeline("ecg-classification", model="{name}", trust_remote_code=True)',
        'print(clf("record.hea"))',
        "```", "",
        "## Limitations", "",
        "Performance depends on the population, acquisition device, lead placement and label definitions; evaluate on "
        "your own cohort (for example with `anyecg_hf.evaluation.evaluate_diagnosis`) and recalibrate thresholds "
        "before "
        "any study. Metrics above carry bootstrap confidence intervals; small subgroups and rare conditions have wide "
        "intervals.", "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
