"""The tutorial of docs/tutorial/README.md, as a script that runs every step and renders the page with its output.

    python docs/tutorial/tutorial.py                    # run in ./tutorial-output, print each step
    python docs/tutorial/tutorial.py --render docs/tutorial/README.md   # and rewrite the page

From a folder of ECG files to profiles, report pages, FHIR bundles, a dataset, a fine-tuned model and its evaluation,
all on the CPU in a few minutes. tests/test_tutorial.py runs it (so it never goes stale) and checks that the page
shows exactly these commands.

The tutorial uses a tiny stand-in model so that it runs offline in seconds; with network access, leave out
`--model` to use the public ECGFounder (150 conditions), or pass your own folder / Hub id.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# progress bars and Accelerate's checkpoint chatter: not what a reader needs to see
_PROGRESS = re.compile(r"\d+%\||it/s\]|s/it\]|^Loading weights|^Writing model shards|INFO accelerate\.")

# (title, text, command template, how much of the output to show)
STEPS = [
    ("A model",
     "A tiny stand-in with ECGFounder's 150 conditions (random weights: its findings mean nothing). Real runs leave "
     "out `--model` (the public ECGFounder, downloaded and converted once) or pass a fine-tuned folder or Hub id.",
     "python -c \"from anyecg_hf.testing import write_tiny_report_model as w; print(w('{work}/tiny-model'))\"", 2),
    ("Profiles of a folder of ECG files",
     "Every ECG file under the folder (any supported format), one row per ECG and condition.",
     "anyecg profile examples/ecg --model {work}/tiny-model --top-k 3 --out {work}/profile.csv", 3),
    ("", "", "head -n 7 {work}/profile.csv", 8),
    ("A report page per ECG",
     "Open `{work}/report/index.html` in a browser: one self-contained page per ECG (tracing, measurements, top "
     "conditions, quality per lead, model and precision, research-use stamp).",
     "anyecg report examples/ecg --model {work}/tiny-model --top-k 5 --out {work}/report", 3),
    ("", "", "ls {work}/report", 8),
    ("FHIR R4 bundles for a hospital system",
     "One `Bundle` per ECG: a `DiagnosticReport`, one `Observation` per reported condition (SNOMED-CT coded where "
     "the crosswalk has an exact code), and a `Device` naming the model.",
     "anyecg profile examples/ecg --model {work}/tiny-model --top-k 5 --format fhir --out {work}/fhir", 3),
    ("", "", "ls {work}/fhir", 8),
    ("A labelled cohort as a dataset",
     "The 50 CinC 2021 test records with their SNOMED-CT diagnoses, split by patient.",
     "anyecg build-dataset --records tests/assets/data/cinc2021 --layout cinc --out {work}/cohort "
     "--split train=0.6,validation=0.2,test=0.2", 6),
    ("Zero-shot: the 150-condition model on the SNOMED-coded cohort",
     "ECGFounder's labels are statement texts without codes; `--label-map snomed` reaches the cohort's SNOMED-CT "
     "conditions through the packaged crosswalk (`table.csv` says which model label(s) each condition was matched "
     "to, and the tier; unmatched conditions are listed, never silently scored).",
     "anyecg evaluate --model {work}/tiny-model --dataset {work}/cohort --split test --label-map snomed "
     "--out {work}/evaluation-zero-shot --n-bootstrap 20", 6),
    ("Fine-tune on the cohort",
     "The diagnosis recipe with a tiny backbone (the YAML shows every setting; `--set` overrides one). For real "
     "work start from ECGFounder (`model.init: ecgfounder`) and train for longer.",
     "python recipes/finetune_diagnosis.py --config recipes/configs/tiny_cpu.yaml --set data.dataset={work}/cohort "
     "--set training.output_dir={work}/run --set training.max_steps=10 --set training.eval_every=10 "
     "--set training.save_every=10 --set evaluation.n_bootstrap=20", 3),
    ("Evaluate the fine-tuned model",
     "Per-condition AUROC / AUPRC with bootstrap confidence intervals on the held-out split; the model's conditions "
     "are matched to the dataset's by code.",
     "anyecg evaluate --model {work}/run/final --dataset {work}/cohort --split test --out {work}/evaluation "
     "--n-bootstrap 50", 5),
    ("", "", "head -n 9 {work}/evaluation/report.md", 9),
    ("Report with the fine-tuned model", "",
     "anyecg report tests/assets/data/cinc2021/JS20000.hea --model {work}/run/final --out {work}/report-finetuned", 3),
]


def _argv(command: str, work: str) -> list:
    args = shlex.split(command.format(work=work))
    if args[0] == "anyecg":
        return [sys.executable, "-m", "anyecg_hf.cli", *args[1:]]
    if args[0] == "python":
        return [sys.executable, *args[1:]]
    return args


def run(work: str, render: str | None = None, echo: bool = True) -> list:
    """Run every step from the repository root; returns `[(step, output)]`. Stops at the first failing step
    (raising `RuntimeError` with its output)."""
    os.makedirs(ROOT / work if not os.path.isabs(work) else work, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TQDM_DISABLE="1", PYTHONWARNINGS="ignore")
    results = []
    for step in STEPS:
        title, _, command, keep = step
        t0 = time.perf_counter()
        proc = subprocess.run(_argv(command, work), cwd=ROOT, env=env, capture_output=True, text=True)
        lines = [ln.replace(f"{ROOT}{os.sep}", "") for ln in (proc.stdout + proc.stderr).splitlines()
                 if ln.strip() and not _PROGRESS.search(ln)]
        if proc.returncode != 0:
            raise RuntimeError(f"tutorial step failed ({proc.returncode}): {command.format(work=work)}\n"
                               + "\n".join(lines[-30:]))
        shown = lines[:keep] if command.startswith(("head", "ls")) else lines[-keep:]
        results.append((step, shown))
        if echo:
            print(f"$ {command.format(work=work)}   ({time.perf_counter() - t0:.0f} s)")
            print("\n".join(shown))
    if render:
        Path(render).write_text(_page(results, work), encoding="utf-8")
    return results


def _page(results, work) -> str:
    out = [Path(ROOT / "docs" / "tutorial" / "intro.md").read_text(encoding="utf-8").rstrip(), ""]
    for (title, text, command, _), shown in results:
        if title:
            out += [f"## {title}", ""]
        if text:
            out += [text.format(work=work), ""]
        out += ["```console", f"$ {command.format(work=work)}", *shown, "```", ""]
    out += ["_Rendered by `python docs/tutorial/tutorial.py --render docs/tutorial/README.md`; "
            "tests/test_tutorial.py runs the same steps._", ""]
    return "\n".join(out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="tutorial-output", help="output folder (relative to the repository root)")
    p.add_argument("--render", default=None, help="write the tutorial page (markdown) here")
    a = p.parse_args()
    run(a.work, a.render)
