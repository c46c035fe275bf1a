"""The package layout's promises: light imports (no torch / transformers for `anyecg_hf.io` or `anyecg --help`),
registration with transformers on use, and the prediction core's one preprocessing step (batch = one by one, a bad
record becomes an error of its own)."""

import ast
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> set:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_io_and_cli_help_do_not_import_torch_or_transformers():
    for code in ("import anyecg_hf.io", "import anyecg_hf",
                 "from anyecg_hf.cli import build_parser\nbuild_parser().format_help()",
                 "from anyecg_hf.cli import build_parser\nbuild_parser('profile').format_help()"):
        loaded = _modules_after(code)
        assert "torch" not in loaded and "transformers" not in loaded, code


def test_registration_happens_when_transformers_is_used():
    loaded = _modules_after("import anyecg_hf\nfrom transformers.pipelines import PIPELINE_REGISTRY\n"
                            "assert 'ecg-profiling' in PIPELINE_REGISTRY.supported_tasks\n"
                            "from transformers import AutoConfig\nassert AutoConfig.for_model('anyecg').model_type == 'anyecg'")
    assert "anyecg_hf.pipelines.profiling" in loaded


def test_no_private_name_imported_across_packages():
    """`from anyecg_hf.x... import _name` / `from ..x import _name` only inside the same sub-package."""
    offenders = []
    for path in (ROOT / "anyecg_hf").rglob("*.py"):
        package = path.relative_to(ROOT / "anyecg_hf").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            module = node.module or ""
            if node.level >= 2 or (node.level == 0 and module.startswith("anyecg_hf.")):
                target = module.split(".")[0] if node.level >= 2 else module.split(".")[1]
                if private and target != package:
                    offenders.append(f"{path.relative_to(ROOT)}: {module} {private}")
    assert offenders == []


def test_prepare_records_batch_equals_one_by_one_and_isolates_a_bad_record(assets):
    from anyecg_hf.io import read_ecg
    from anyecg_hf.prediction import prepare_records
    from anyecg_hf.processing import AnyECGFeatureExtractor

    fe = AnyECGFeatureExtractor(sampling_rate=250, num_samples=1000)
    records = [read_ecg(assets / "data" / "cinc2021" / f"{n}.hea") for n in ("HR06000", "JS20000", "E07500")]
    flat = records[1].signal.copy()
    flat[3] = 0.0  # lead aVR flat: a quality flag and a masked lead for this record only
    records[1] = dataclasses.replace(records[1], signal=flat)
    bad = np.zeros((12, 10))  # 10 samples without a sampling rate: the extractor refuses it
    batch = prepare_records(records + [bad], fe, on_error="record")
    assert [p.error is None for p in batch] == [True, True, True, False]
    assert batch[3].error[0] in ("ECGInputError", "ValueError") and batch[3].inputs == {}
    for rec, got in zip(records, batch):
        alone = prepare_records([rec], fe)[0]
        assert got.warnings == alone.warnings
        for key, value in alone.inputs.items():
            np.testing.assert_array_equal(got.inputs[key], value)
    assert batch[0].inputs["input_values"].shape == (1, 12, 1000)
    assert any("aVR" in w for w in batch[1].warnings) and not any("aVR" in w for w in batch[0].warnings)
    assert not batch[1].inputs["lead_mask"][0, 3] and batch[0].inputs["lead_mask"][0].all()
