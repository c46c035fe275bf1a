"""The pipelines' ONNX Runtime option gives the same results as the PyTorch path."""

import numpy as np
import pytest
import torch
from transformers import pipeline

from anyecg_hf import AnyECGForDiagnosis
from anyecg_hf.export import export_onnx
from anyecg_hf.testing import tiny_config


@pytest.fixture(scope="module")
def tiny_folder_and_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_pipe")
    torch.manual_seed(0)
    model = AnyECGForDiagnosis(tiny_config()).eval()
    for p in model.parameters():  # non-trivial head so scores differ between labels
        p.data += 0.05 * torch.randn_like(p)
    model.save_pretrained(root / "model")
    export_onnx(model, root / "model.onnx")
    return root / "model", root / "model.onnx"


def test_onnx_pipeline_matches_torch(tiny_folder_and_onnx, assets):
    folder, onnx_path = tiny_folder_and_onnx
    files = [str(assets / "data" / "cinc2021" / f"{r}.hea") for r in ("HR06000", "JS20000", "E07500")]
    for task in ("ecg-profiling", "ecg-classification", "ecg-embedding"):
        torch_pipe = pipeline(task, model=str(folder))
        onnx_pipe = pipeline(task, model=str(folder), onnx_model=str(onnx_path))
        a, b = torch_pipe(files, batch_size=2), onnx_pipe(files, batch_size=2)
        for x, y in zip(a, b):
            if task == "ecg-profiling":
                sa = {d["id"]: d["score"] for d in x["diagnoses"]}
                sb = {d["id"]: d["score"] for d in y["diagnoses"]}
                assert sa.keys() == sb.keys() and max(abs(sa[k] - sb[k]) for k in sa) < 1e-5
                assert len(set(sa.values())) > 1
            elif task == "ecg-classification":
                assert [d["label"] for d in x] == [d["label"] for d in y]
                assert max(abs(d["score"] - e["score"]) for d, e in zip(x, y)) < 1e-5
            else:
                assert np.abs(x["embedding"] - y["embedding"]).max() < 1e-5


def test_onnx_model_with_other_labels_is_refused(tiny_folder_and_onnx, tmp_path):
    from anyecg_hf import LabelSpace

    _, onnx_path = tiny_folder_and_onnx
    other = AnyECGForDiagnosis(tiny_config(label_space=LabelSpace.from_names(["x", "y", "z"])))
    other.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="another label space"):
        pipeline("ecg-classification", model=str(tmp_path), onnx_model=str(onnx_path))
