"""The tutorial (docs/tutorial/) runs end to end, makes what it says, and its page shows exactly its commands."""

import csv
import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial"


def _module():
    spec = importlib.util.spec_from_file_location("anyecg_tutorial", TUTORIAL / "tutorial.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tutorial_page_shows_the_scripts_commands():
    tutorial = _module()
    page = (TUTORIAL / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"^\$ (.+)$", page, re.M)
    assert shown == [step[2].format(work="tutorial-output") for step in tutorial.STEPS]


def test_tutorial_runs_end_to_end(tmp_path):
    tutorial = _module()
    work = tmp_path / "work"
    results = tutorial.run(str(work), echo=False)  # raises with the step's output if any step fails
    assert len(results) == len(tutorial.STEPS)
    with open(work / "profile.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15 and {r["record_id"] for r in rows} == {"E07500", "HR06000", "HR06001", "HR06002", "JS20000"}
    assert sorted(p.name for p in (work / "report").iterdir()) == sorted(
        ["index.html", "E07500.html", "HR06000.html", "HR06001.html", "HR06002.html", "JS20000.html"])
    bundles = sorted((work / "fhir").glob("*.json"))
    assert [p.stem for p in bundles] == ["E07500", "HR06000", "HR06001", "HR06002", "JS20000"]
    bundle = json.loads(bundles[0].read_text())
    assert [e["resource"]["resourceType"] for e in bundle["entry"]].count("Observation") == 5  # --top-k 5
    assert (work / "cohort").is_dir()
    assert (work / "run" / "final" / "config.json").is_file()
    metrics = json.loads((work / "evaluation" / "metrics.json").read_text())
    assert "macro_auroc" in json.dumps(metrics)
    zero_shot = json.loads((work / "evaluation-zero-shot" / "metrics.json").read_text())
    assert "snomed" in json.dumps(zero_shot).lower()
    with open(work / "evaluation-zero-shot" / "diagnosis" / "table.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert sum(bool(r.get("model_id")) for r in table) >= 5  # dataset conditions reached through the crosswalk
    assert (work / "report-finetuned" / "JS20000.html").is_file()
