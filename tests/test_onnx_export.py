"""`anyecg export-onnx` and `anyecg_hf.runtime.OnnxECGModel`: ONNX Runtime parity with PyTorch (max-abs 1e-4) on
the fixture inputs, dynamic batch and length, config/label round trip, clear errors."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from anyecg_hf import AnyECGDiagnosisOutput, AnyECGForDiagnosis, AnyECGModel, AnyECGModelOutput  # noqa: E402
from anyecg_hf.cli import main  # noqa: E402
from anyecg_hf.export import OnnxECGModel, export_onnx  # noqa: E402
from anyecg_hf.export.onnx import min_export_samples  # noqa: E402
from anyecg_hf.testing import tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    torch.manual_seed(3)
    model = AnyECGForDiagnosis(tiny_config()).eval()
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(folder)
    return folder, model


@pytest.fixture(scope="module")
def cli_export(tiny_folder, tmp_path_factory):
    folder, model = tiny_folder
    out = tmp_path_factory.mktemp("onnx") / "sub" / "tiny.onnx"
    assert main(["export-onnx", str(folder), str(out)]) == 0
    return out, model


def test_cli_export_parity_on_fixture_inputs(cli_export, parity):
    path, model = cli_export
    runner = OnnxECGModel(path, num_threads=1)
    for name in ("inputs_12lead.npy", "inputs_odd_length.npy"):  # (4, 12, 5000) and (2, 12, 3777): dynamic length
        x = np.load(parity / name)
        with torch.no_grad():
            expected = model(torch.from_numpy(x))
        got = runner.run(x)
        assert set(got) == {"logits", "pooler_output"}
        assert got["logits"].shape == (x.shape[0], 3)
        assert np.abs(got["logits"] - expected.logits.numpy()).max() < 1e-4
        assert np.abs(got["pooler_output"] - expected.pooler_output.numpy()).max() < 1e-4
    # dynamic batch: one ECG and a batch of 5 give the same rows as the batch of 4
    x = np.load(parity / "inputs_12lead.npy")
    one = runner.run(x[2:3])["logits"]
    five = runner.run(np.concatenate([x, x[:1]]))["logits"]
    assert np.abs(one[0] - runner.run(x)["logits"][2]).max() < 1e-5
    assert five.shape == (5, 3)


def test_onnx_model_behaves_like_the_pytorch_model(cli_export, parity):
    path, model = cli_export
    runner = OnnxECGModel(path, num_threads=1)
    assert runner.architecture == "AnyECGForDiagnosis"
    assert runner.config.label_space.names == model.config.label_space.names == ["AF", "SB", "STACH"]
    assert runner.config.lead_names == model.config.lead_names
    x = torch.from_numpy(np.load(parity / "inputs_12lead.npy"))
    out = runner(input_values=x, lead_mask=torch.ones(4, 12, dtype=torch.bool))  # extra inputs are ignored
    assert isinstance(out, AnyECGDiagnosisOutput)
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model(x).logits, atol=1e-4, rtol=0)
    logits, pooled = runner(x, return_dict=False)
    assert logits.shape == (4, 3) and pooled.shape == (4, model.config.hidden_size)


def test_onnx_input_errors(cli_export):
    path, _ = cli_export
    runner = OnnxECGModel(path, num_threads=1)
    with pytest.raises(ValueError, match="leads"):
        runner.run(np.zeros((1, 11, 1000), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, leads, samples\)"):
        runner.run(np.zeros((12, 1000), np.float32))
    with pytest.raises(ValueError, match=f"at least {min_export_samples(runner.config)} samples"):
        runner.run(np.zeros((1, 12, 4), np.float32))
    with pytest.raises(ValueError, match="floating"):
        runner.run(np.zeros((1, 12, 1000), np.int64))
    with pytest.raises(FileNotFoundError):
        OnnxECGModel(path.parent / "missing.onnx")


def test_cli_errors(tmp_path, capsys):
    assert main(["export-onnx", str(tmp_path / "no_such_model"), str(tmp_path / "x.onnx")]) == 3  # model error
    err = capsys.readouterr().err
    assert "export-onnx: error: cannot load" in err and "no_such_model" in err
    assert not (tmp_path / "x.onnx").exists()


def test_backbone_fixed_length_export(tmp_path):
    """The bare backbone exports last_hidden_state too; a fixed-length file rejects other lengths."""
    torch.manual_seed(4)
    model = AnyECGModel(tiny_config()).eval()
    path = export_onnx(model, tmp_path / "backbone.onnx", dynamic_length=False, num_samples=1000)
    runner = OnnxECGModel(path, num_threads=1)
    assert runner.output_names == ["last_hidden_state", "pooler_output"]
    x = torch.randn(3, 12, 1000)
    out = runner(input_values=x)
    assert isinstance(out, AnyECGModelOutput)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(out.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="exported for 1000 samples"):
        runner.run(np.zeros((1, 12, 999), np.float32))


def test_released_depth_exports_with_dynamic_batch_and_length(tmp_path):
    """The released depth (stem + 7 downsampling stages, narrow here) exports with dynamic batch and length, and
    runs batches above the eager cache-block size (16) and odd lengths like PyTorch. The shortcut's eager-only
    even-length branch tested the length before the export mode, so export guarded on it (lengths 256 k - 120 only)
    and failed for the full-size ECGFounder network."""
    torch.manual_seed(5)
    config = tiny_config(filter_list=[8, 8, 8, 8, 8, 16, 16], m_blocks_list=[1] * 7)
    model = AnyECGForDiagnosis(config).eval()
    runner = OnnxECGModel(export_onnx(model, tmp_path / "deep.onnx"), num_threads=1)
    for shape in [(20, 12, 5000), (3, 12, 2501)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(input_values=x).logits
        torch.testing.assert_close(torch.from_numpy(runner.run(x)["logits"]), expected, atol=1e-4, rtol=0)
