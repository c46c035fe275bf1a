"""The default-model factory: offline with nothing cached it fails at once with instructions; online it downloads
`12_lead_ECGFounder.pth` (from a loopback fake Hub), converts it into the HF cache as a normal folder, and later
runs (offline) reuse that folder, including `pipeline("ecg-profiling")` with no model. Subprocesses, because the
Hub client reads HF_HOME / HF_ENDPOINT / HF_HUB_OFFLINE at import."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hub_server import FakeHub, _Repo

pytestmark = pytest.mark.floors  # also run with the lowest declared dependency versions (.ci/run)

ONLINE = """
import os, time, anyecg_hf
from anyecg_hf.pipelines import DefaultModelUnavailableError, resolve_model
hub = os.environ["HF_ENDPOINT"]
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"   # nothing listens there: the probe must fail at once
t = time.monotonic()
try:
    resolve_model()
except DefaultModelUnavailableError as err:
    print("UNREACHABLE_S", round(time.monotonic() - t, 3), "cannot be reached" in str(err))
os.environ["HF_ENDPOINT"] = hub
print("PATH", resolve_model())
from transformers import pipeline
pipe = pipeline("ecg-profiling", device="cpu")          # no model: the factory's folder
print("PROFILE", json.dumps(pipe(EXAMPLE, top_k=3)))
"""

# HF_HUB_OFFLINE=1 from the start. First nothing cached (empty Hub cache, converted-model cache pointed at an empty
# folder): an immediate error that says what to do; then the folder converted by the online run is used.
OFFLINE = """
import os, time, anyecg_hf
from transformers import pipeline
from anyecg_hf.pipelines import DefaultModelUnavailableError, resolve_model
os.environ["ANYECG_CACHE"] = EMPTY
t = time.monotonic()
try:
    resolve_model()
except DefaultModelUnavailableError as err:
    print("RESOLVE_S", round(time.monotonic() - t, 3))
    print("MESSAGE", json.dumps(str(err)))
t = time.monotonic()
try:
    pipeline("ecg-profiling")
except OSError as err:
    print("PIPELINE_S", round(time.monotonic() - t, 3), type(err).__name__)
del os.environ["ANYECG_CACHE"]
t = time.monotonic()
path = resolve_model("PKUDigitalHealth/ECGFounder")
print("CACHED_S", round(time.monotonic() - t, 3))
print("PATH", path)
print("PROFILE", json.dumps(pipeline("ecg-profiling", device="cpu")(EXAMPLE, top_k=3)))
"""


def tiny_ecgfounder_checkpoint(path):
    """A small network in the released `Net1D` layout with 150 outputs (the converter infers the architecture
    from the tensor shapes), so the factory's download/convert/load steps take no time in tests."""
    import re

    import torch

    from anyecg_hf import AnyECGForDiagnosis, LabelSpace
    from anyecg_hf.testing import tiny_config

    torch.manual_seed(0)
    model = AnyECGForDiagnosis(tiny_config(label_space=LabelSpace.ecgfounder()))
    state = {}
    for key, value in model.state_dict().items():
        key = key.replace("anyecg.", "").replace("classifier.", "dense.")
        key = re.sub(r"^stem\.conv\.", "first_conv.conv.", key)
        key = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.conv([123])\.", r"stage_list.\1.block_list.\2.conv\3.conv.", key)
        key = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.se\.fc([12])\.", r"stage_list.\1.block_list.\2.se_fc\3.", key)
        state[key] = value
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path


def _run(code, env, cwd, timeout=300):
    r = subprocess.run([sys.executable, "-c", "import json\n" + textwrap.dedent(code)], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=timeout)
    lines = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition(" ")
        lines[key] = value
    return r, lines


@pytest.fixture
def env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ANYECG_CACHE"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_TOKEN="hf_test_token", PYTHONWARNINGS="ignore")
    return env


def test_default_model_factory_online_then_offline(tmp_path, env, assets):
    import torch

    from anyecg_hf import AnyECGForDiagnosis
    from anyecg_hf.io import read_ecg
    from anyecg_hf.processing import AnyECGFeatureExtractor

    pth = tiny_ecgfounder_checkpoint(tmp_path / "12_lead_ECGFounder.pth")
    example = str(assets / "data" / "cinc2021" / "HR06000.hea")
    empty = tmp_path / "empty_cache"
    prelude = f"EXAMPLE = {example!r}\nEMPTY = {str(empty)!r}\n"
    with FakeHub() as hub:
        repo = hub.repos["PKUDigitalHealth/ECGFounder"] = _Repo()
        repo.commits.append(("c0ffee" * 6 + "abcd", {"12_lead_ECGFounder.pth": pth.read_bytes(), "README.md": b"x"}))
        r, out = _run(prelude + ONLINE, dict(env, HF_ENDPOINT=hub.url), tmp_path)
        assert "PROFILE" in out, r.stderr[-4000:]
        downloads = [q for q in hub.requests if q.startswith("GET /PKUDigitalHealth/ECGFounder/resolve/")]
    seconds, said = out["UNREACHABLE_S"].split()
    assert float(seconds) < 5.0 and said == "True"  # a DNS failure would cost ~27 s of client retries
    folder = tmp_path / "hf_home" / "anyecg_hf" / "ecgfounder-12lead-main"
    assert out["PATH"] == str(folder) and len(downloads) == 1
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "anyecg_source.json"} <= set(os.listdir(folder))
    source = json.loads((folder / "anyecg_source.json").read_text())
    assert source["repo_id"] == "PKUDigitalHealth/ECGFounder" and source["filename"] == "12_lead_ECGFounder.pth"
    assert not [p for p in os.listdir(folder.parent) if p.startswith(".")]  # no temp folder left behind
    profile = json.loads(out["PROFILE"])
    # the default model is the converted checkpoint: its top-3 equal a manual conversion + forward
    model = AnyECGForDiagnosis.from_ecgfounder(pth)
    fe = AnyECGFeatureExtractor.from_model_config(model.config)
    with torch.no_grad():
        probs = torch.sigmoid(model(**fe(read_ecg(example), return_tensors="pt")).logits[0]).numpy()
    top = np.argsort(-probs, kind="stable")[:3]
    assert [d["label"] for d in profile["diagnoses"]] == [model.config.label_space[i].name for i in top]
    assert [d["score"] for d in profile["diagnoses"]] == pytest.approx(probs[top].tolist(), abs=1e-6)
    assert profile["risks"] == [] and profile["record"] == "HR06000"

    # the Hub is gone and HF_HUB_OFFLINE=1 (the Hub download cache is empty too)
    offline = dict(env, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "empty_hub"))
    r, out = _run(prelude + OFFLINE, offline, tmp_path)
    assert "PROFILE" in out and "MESSAGE" in out, r.stderr[-4000:]
    message = json.loads(out["MESSAGE"])
    assert float(out["RESOLVE_S"]) < 5.0
    for must in ("--model PATH", "anyecg convert-ecgfounder", "HF_HUB_OFFLINE", str(empty)):
        assert must in message, (must, message)
    seconds, kind = out["PIPELINE_S"].split()
    assert kind == "DefaultModelUnavailableError" and float(seconds) < 5.0
    assert out["PATH"] == str(folder) and float(out["CACHED_S"]) < 1.0
    assert json.loads(out["PROFILE"]) == profile
