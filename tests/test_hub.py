"""Hub round trips through the real `huggingface_hub` client against a loopback server (tests/hub_server.py),
then the same loads offline from the Hub cache. Nothing here touches the network."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from hub_server import FakeHub

from anyecg_hf import AnyECGForDiagnosis
from anyecg_hf.testing import tiny_config

pytestmark = pytest.mark.floors  # also run with the lowest declared dependency versions (.ci/run)

PUSH = """
import numpy as np, torch
import anyecg_hf
from anyecg_hf import AnyECGForDiagnosis, LabelSpace
from anyecg_hf.testing import tiny_config
from huggingface_hub import HfApi
torch.manual_seed(0)
space = LabelSpace([{"id": "af", "name": "AF", "code_system": "ICD-10", "code": "I48", "threshold": 0.3},
                    {"id": "sb", "name": "SB", "code_system": "SNOMED-CT", "code": "426177001"},
                    {"id": "x", "name": "Other"}])
model = AnyECGForDiagnosis(tiny_config(label_space=space)).eval()
model.push_to_hub("org/tiny-anyecg")
with torch.no_grad():
    np.save("expected.npy", model(torch.from_numpy(np.load("x.npy"))).logits.numpy())
# what the package gives on the first signal, for the pull with the package hidden (PULL_REMOTE_CODE)
from transformers import pipeline
x = np.load("x.npy")[0].astype(np.float64)
np.save("features.npy", anyecg_hf.AnyECGFeatureExtractor()(x, sampling_rate=500)["input_values"])
pipe = pipeline("ecg-classification", model=model, feature_extractor=anyecg_hf.AnyECGFeatureExtractor())
scores = {p["label"]: p["score"] for p in pipe({"signal": x, "sampling_rate": 500}, top_k=None)}
np.save("scores.npy", np.array([scores[k] for k in ("AF", "SB", "Other")]))
HfApi().create_repo("org/ecgfounder")
HfApi().upload_file(path_or_fileobj="1_lead_ECGFounder.pth", path_in_repo="1_lead_ECGFounder.pth", repo_id="org/ecgfounder")
print("PUSHED", sorted(HfApi().list_repo_files("org/tiny-anyecg")))
"""

PULL = """
import numpy as np, torch
import anyecg_hf
from anyecg_hf import AnyECGForDiagnosis
from transformers import AutoModel
m = AutoModel.from_pretrained("org/tiny-anyecg")
assert type(m).__name__ == "AnyECGForDiagnosis"
ls = m.config.label_space
assert [(c.id, c.code, c.threshold) for c in ls] == [("af", "I48", 0.3), ("sb", "426177001", None), ("x", None, None)]
with torch.no_grad():
    y = m(torch.from_numpy(np.load("x.npy"))).logits.numpy()
assert np.array_equal(y, np.load("expected.npy"))
f = AnyECGForDiagnosis.from_ecgfounder("org/ecgfounder", num_leads=1)
with torch.no_grad():
    logits = f(torch.from_numpy(np.load(PARITY + "/inputs_1lead.npy"))).logits.numpy()
assert np.abs(logits - np.load(PARITY + "/logits_1lead.npy")).max() < 1e-4
print("PULLED")
"""

# the package hidden: the feature extractor and a pipeline come from the repo's code files (anyecg_hf.remote_code)
PULL_REMOTE_CODE = """
import sys
sys.modules["anyecg_hf"] = None
import numpy as np
from transformers import AutoFeatureExtractor, pipeline
fe = AutoFeatureExtractor.from_pretrained("org/tiny-anyecg", trust_remote_code=True)
x = np.load("x.npy")[0].astype(np.float64)
assert np.allclose(fe(x, sampling_rate=500)["input_values"], np.load("features.npy"), atol=2e-5)
pipe = pipeline("ecg-classification", model="org/tiny-anyecg", trust_remote_code=True)
assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
scores = {p["label"]: p["score"] for p in pipe({"signal": x, "sampling_rate": 500}, top_k=None)}
assert np.allclose([scores[k] for k in ("AF", "SB", "Other")], np.load("scores.npy"), atol=1e-5), scores
print("REMOTE CODE PULLED")
"""


def _run(code, env, cwd, timeout=300):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def hub_env(tmp_path, parity, ecgfounder_pth_1):
    (tmp_path / "1_lead_ECGFounder.pth").write_bytes(ecgfounder_pth_1.read_bytes())
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2, 12, 700)).astype(np.float32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_TOKEN="hf_test_token", HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    return env, f"PARITY = {str(parity)!r}\n"


def test_push_to_hub_then_pull_online_and_offline(tmp_path, hub_env):
    env, prelude = hub_env
    with FakeHub() as hub:
        online = dict(env, HF_ENDPOINT=hub.url)
        r = _run(PUSH, online, tmp_path)
        assert "PUSHED" in r.stdout, r.stderr[-3000:]
        files = set(hub.repos["org/tiny-anyecg"].head[1])
        assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= files
        # trust_remote_code files travel with the weights: the model's, the extractor's and the pipelines'
        assert {"modeling_anyecg.py", "feature_extraction_anyecg.py", "pipeline_classification.py", "leads.py"} <= files
        r = _run(prelude + PULL, online, tmp_path)
        assert "PULLED" in r.stdout, r.stderr[-3000:]
        assert any(req.startswith("GET /org/ecgfounder/resolve/") for req in hub.requests)
        r = _run(PULL_REMOTE_CODE, online, tmp_path)
        assert "REMOTE CODE PULLED" in r.stdout, r.stderr[-3000:]
    # The server is gone: the same calls must be served from the Hub cache.
    offline = dict(env, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    r = _run(prelude + PULL, offline, tmp_path)
    assert "PULLED" in r.stdout, r.stderr[-3000:]
    r = _run(PULL_REMOTE_CODE, offline, tmp_path)
    assert "REMOTE CODE PULLED" in r.stdout, r.stderr[-3000:]


def test_offline_without_cache_fails_fast_with_instructions(tmp_path, hub_env):
    env, _ = hub_env
    code = """
    from anyecg_hf import AnyECGForDiagnosis
    try:
        AnyECGForDiagnosis.from_ecgfounder("PKUDigitalHealth/ECGFounder")
    except OSError as err:
        print("ERR", err)
    """
    start = time.monotonic()
    r = _run(code, dict(env, HF_HUB_OFFLINE="1"), tmp_path)
    assert time.monotonic() - start < 60  # a hang would hit this long before the subprocess timeout
    assert "ERR Cannot get 12_lead_ECGFounder.pth" in r.stdout and "local .pth path" in r.stdout, r.stderr[-2000:]


def test_save_pretrained_folder_is_pipeline_ready(tmp_path):
    model = AnyECGForDiagnosis(tiny_config())
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".py")) == [
        "config.json", "model.safetensors", "preprocessor_config.json"]
    from transformers import AutoFeatureExtractor

    fe = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert fe.sampling_rate == 500 and list(fe.lead_names) == model.config.lead_names
    x = torch.randn(1, 12, 100)
    with torch.no_grad():
        assert model(x).logits.shape == (1, 3)
