import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from anyecg_hf.testing import parity_dir, assets_dir, tiny_config, write_seeded_ecgfounder_checkpoint  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def assets():
    path = assets_dir()
    if not path.exists():
        pytest.fail(f"test assets folder {path} is missing (set ANYECG_ASSETS_DIR)")
    return path


@pytest.fixture(scope="session")
def parity():
    return parity_dir()


@pytest.fixture(scope="session")
def ecgfounder_pth_12(tmp_path_factory):
    return write_seeded_ecgfounder_checkpoint(tmp_path_factory.mktemp("ckpt") / "12_lead_ECGFounder.pth", "12lead")


@pytest.fixture(scope="session")
def ecgfounder_pth_1(tmp_path_factory):
    return write_seeded_ecgfounder_checkpoint(tmp_path_factory.mktemp("ckpt1") / "1_lead_ECGFounder.pth", "1lead")


@pytest.fixture(scope="session")
def seeded_model_12(ecgfounder_pth_12):
    from anyecg_hf import AnyECGForDiagnosis

    return AnyECGForDiagnosis.from_ecgfounder(ecgfounder_pth_12)


@pytest.fixture
def tiny():
    return tiny_config()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny `AnyECGForDiagnosis` folder (seed 0): config, safetensors weights, preprocessor config."""
    from anyecg_hf import AnyECGForDiagnosis

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_model") / "tiny"
    AnyECGForDiagnosis(tiny_config()).save_pretrained(path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fuzz_large: the 1,000-files-per-format fuzz (minutes); runs only with `-m fuzz_large` "
        "(a separate step of .ci/run)")
    config.addinivalue_line(
        "markers", "floors: also run by .ci/run in a virtualenv with the lowest dependency versions setup.py allows "
        "(Auto classes, remote code, pipelines, recipes, evaluation)")


def pytest_collection_modifyitems(config, items):
    expr = config.getoption("-m") or ""
    if "fuzz_large" in expr and "not fuzz_large" not in expr:
        return
    skip = pytest.mark.skip(reason="large fuzz: run with -m fuzz_large (a separate .ci/run step)")
    for item in items:
        if "fuzz_large" in item.keywords:
            item.add_marker(skip)
