"""Model folders that must be refused before any row is written (issue 21): missing tensors, non-finite weights,
a pickled `pytorch_model.bin` only, a corrupt safetensors header. In-process for the loader, one real CLI run for
the exit code and the one-line message."""

import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from anyecg_hf.modeling.loading import ModelWeightsError, load_checked

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def good_model(tiny_model_dir):
    return tiny_model_dir


def _variant(good, tmp_path, name, edit):
    path = tmp_path / name
    shutil.copytree(good, path)
    edit(path)
    return path


def _drop_half(path):
    sd = load_file(path / "model.safetensors")
    keep = {k: v for i, (k, v) in enumerate(sorted(sd.items())) if i % 2}
    save_file(keep, path / "model.safetensors", metadata={"format": "pt"})
    return sorted(set(sd) - set(keep))


def _nan(path):
    sd = load_file(path / "model.safetensors")
    key = sorted(k for k in sd if k.endswith("weight"))[0]
    sd[key] = torch.full_like(sd[key], float("nan"))
    save_file(sd, path / "model.safetensors", metadata={"format": "pt"})


def _pickle_only(path):
    os.remove(path / "model.safetensors")
    with open(path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": os.getcwd}, f)  # an object weights_only=True refuses (it never runs)


def _corrupt_header(path):
    (path / "model.safetensors").write_bytes(b"\xff" * 8 + b"not a header")


def test_good_folder_loads(good_model):
    model = load_checked(good_model)
    assert type(model).__name__ == "AnyECGForDiagnosis"


def test_missing_tensors_refused_naming_them(good_model, tmp_path):
    dropped = []
    path = _variant(good_model, tmp_path, "half", lambda p: dropped.extend(_drop_half(p)))
    with pytest.raises(ModelWeightsError) as err:
        load_checked(path)
    msg = str(err.value)
    assert f"{len(dropped)} tensor(s) missing" in msg and dropped[0] in msg and str(path) in msg


@pytest.mark.parametrize("edit, words", [(_nan, "NaN or infinite"), (_pickle_only, "weights_only=True refuses"),
                                         (_corrupt_header, "model.safetensors is corrupt")])
def test_unusable_weights_refused_in_one_line(good_model, tmp_path, edit, words):
    path = _variant(good_model, tmp_path, edit.__name__, edit)
    with pytest.raises(ModelWeightsError, match=words) as err:
        load_checked(path)
    assert "\n" not in str(err.value)


def test_cli_refuses_before_any_row(good_model, assets, tmp_path):
    path = _variant(good_model, tmp_path, "half", _drop_half)
    rec = assets / "data" / "cinc2021" / "E07500.hea"
    out = tmp_path / "out.csv"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "anyecg_hf.cli", "profile", str(rec), "--model", str(path),
                          "--out", str(out), "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 3, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "tensor(s) missing" in res.stderr
    assert not out.exists()


def test_export_onnx_refuses_nan_weights(good_model, tmp_path, capsys):
    from anyecg_hf.cli import main

    path = _variant(good_model, tmp_path, "nan", _nan)
    assert main(["export-onnx", str(path), str(tmp_path / "x.onnx")]) == 3  # the model exit code of every subcommand
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "Traceback" not in err and not (tmp_path / "x.onnx").exists()
