"""Fast backbone runtime: parity of every execution path (fused inference, autograd, channel-major stages,
torch.compile) with the fixture and with the straightforward eager re-implementation in `benchmarks/`, and
CPU thread settings."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from anyecg_hf import AnyECGForDiagnosis, AnyECGModel
from anyecg_hf.modeling import layers
from anyecg_hf.runtime import available_cpus, configure_cpu_threads, default_num_threads
from anyecg_hf.testing import tiny_config

ROOT = Path(__file__).resolve().parent.parent


def _baseline_module():
    spec = importlib.util.spec_from_file_location("baseline_net1d", ROOT / "benchmarks" / "baseline_net1d.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def baseline():
    return _baseline_module().BaselineNet1D


def test_fixture_parity_inference_and_autograd_paths(seeded_model_12, parity):
    """Fused conv+SiLU inference path and the plain autograd path both reproduce the released network."""
    x = torch.from_numpy(np.load(parity / "inputs_12lead.npy"))
    expected = np.load(parity / "logits_12lead.npy")
    with torch.inference_mode():
        assert layers.fused_conv_silu_enabled(x) == layers._FUSED_CONV_SILU
        fast = seeded_model_12(x).logits.numpy()
    x.requires_grad_(True)
    assert not layers.fused_conv_silu_enabled(x)  # grad mode: plain ops with backward
    out = seeded_model_12(x, output_hidden_states=True)
    slow = out.logits.detach().numpy()
    assert np.abs(fast - expected).max() < 1e-4
    assert np.abs(slow - expected).max() < 1e-4
    # the last stage (1024 wide) runs channel-major, the stages before time-major
    stages = np.load(parity / "stage_outputs_12lead_row0.npz")
    for hidden, key in zip(out.hidden_states, ["stem"] + [f"stage{i}" for i in range(7)]):
        assert hidden.shape[1:] == stages[key].shape
        assert np.abs(hidden[0].detach().numpy() - stages[key]).max() < 1e-4, key
    assert out.hidden_states[-1].is_contiguous()  # channel-major last stage
    assert out.hidden_states[1].transpose(1, 2).is_contiguous()  # time-major early stage


def test_odd_length_fixture(seeded_model_12, parity):
    x = torch.from_numpy(np.load(parity / "inputs_odd_length.npy"))
    with torch.inference_mode():
        logits = seeded_model_12(x).logits.numpy()
    assert np.abs(logits - np.load(parity / "logits_odd_length_12lead.npy")).max() < 1e-4


@pytest.mark.parametrize("wide", [False, True])
def test_matches_eager_baseline_across_lengths(baseline, wide):
    """Static padding folded into the convs and the pooled shortcut equal per-call "same" padding at every
    length, odd and even, down to a single sample; `wide` adds a channel-major (1024-wide) stage."""
    torch.manual_seed(0)
    config = tiny_config(filter_list=[16, 1024], groups_width=16) if wide else tiny_config()
    model = AnyECGModel(config).eval()
    reference = baseline.from_anyecg(model)
    assert model.stages[-1].channel_major == wide
    for length in (1, 2, 3, 15, 16, 17, 33, 100, 257, 1001):
        x = torch.randn(3, 12, length)
        with torch.no_grad():
            expected = reference(x)
            got = model(x)
        assert got.last_hidden_state.shape[-1] == -(-length // 8)
        assert got.last_hidden_state.is_contiguous()
        assert torch.allclose(got.pooler_output, expected, atol=1e-5, rtol=0), length


def test_cache_blocking_is_exact():
    """Chunked early stages (uneven chunks of 2 ECGs out of 5) give the same outputs, hidden states and
    gradients as one pass over the batch; the 1024-wide stage runs on the whole batch."""
    torch.manual_seed(5)
    model = AnyECGForDiagnosis(tiny_config(filter_list=[16, 1024], groups_width=16))
    x = torch.randn(5, 12, 1001)
    labels = torch.randint(0, 2, (5, 3)).float()
    results = []
    for block in (0, 2):
        model.zero_grad()
        model.anyecg.cache_block_size = block
        out = model(x, labels=labels, output_hidden_states=True)
        out.loss.backward()
        results.append((out, {k: p.grad.clone() for k, p in model.named_parameters()}))
    (full, grads_full), (blocked, grads_blocked) = results
    torch.testing.assert_close(blocked.logits, full.logits, atol=1e-5, rtol=0)
    assert len(blocked.hidden_states) == len(full.hidden_states) == 3
    for a, b in zip(blocked.hidden_states, full.hidden_states):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=0)  # batch-size dependent oneDNN kernels: float rounding only
    assert blocked.hidden_states[1].transpose(1, 2).is_contiguous()  # concatenation kept the time-major layout
    for name, g in grads_full.items():
        torch.testing.assert_close(grads_blocked[name], g, atol=1e-5, rtol=1e-5, msg=name)


def test_training_gradients_match_baseline(baseline):
    """The time-major autograd path gives the same loss gradients as the straightforward implementation."""
    torch.manual_seed(1)
    model = AnyECGForDiagnosis(tiny_config())
    reference = baseline.from_anyecg(model)
    x = torch.randn(4, 12, 777)
    labels = torch.randint(0, 2, (4, 3)).float()
    model(x, labels=labels).loss.backward()
    logits = model.classifier(reference(x))
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    ours = dict(model.anyecg.named_parameters())
    ref = dict(reference.named_parameters())
    assert len(ours) == len(ref)
    mapped = {
        k.replace("first_conv.conv.", "stem.conv.").replace("stage_list.", "stages.").replace(".block_list.", ".blocks.")
        .replace(".conv1.conv.", ".conv1.").replace(".conv2.conv.", ".conv2.").replace(".conv3.conv.", ".conv3.")
        .replace(".se_fc1.", ".se.fc1.").replace(".se_fc2.", ".se.fc2."): v
        for k, v in ref.items()
    }
    for name, p in ours.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        torch.testing.assert_close(p.grad, mapped[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_state_dict_layout_unchanged():
    """Converted checkpoints depend on these names and shapes."""
    sd = AnyECGModel(tiny_config()).state_dict()
    assert list(sd)[:8] == [
        "stem.conv.weight", "stem.conv.bias",
        "stages.0.blocks.0.conv1.weight", "stages.0.blocks.0.conv1.bias",
        "stages.0.blocks.0.conv2.weight", "stages.0.blocks.0.conv2.bias",
        "stages.0.blocks.0.conv3.weight", "stages.0.blocks.0.conv3.bias",
    ]
    assert sd["stages.0.blocks.0.conv1.weight"].shape == (16, 8, 1)
    assert sd["stages.0.blocks.0.conv2.weight"].shape == (16, 8, 16)
    assert sd["stages.0.blocks.0.se.fc1.weight"].shape == (8, 16)
    assert not any("norm" in k or "shortcut" in k for k in sd)


def test_static_padding_plan():
    conv = layers.SamePadConv1d(4, 4, 16, stride=1)
    assert (conv.conv_padding, conv.trim, conv.explicit_padding) == (8, 1, None)
    conv = layers.SamePadConv1d(4, 4, 16, stride=2)
    assert (conv.conv_padding, conv.trim, conv.explicit_padding) == (0, 0, (7, 8))
    conv = layers.SamePadConv1d(4, 4, 1)
    assert (conv.conv_padding, conv.trim, conv.explicit_padding) == (0, 0, None)
    conv = layers.SamePadConv1d(4, 4, 15, stride=1)
    assert (conv.conv_padding, conv.trim) == (7, 0)
    # stride 3 has no static padding: computed per call, still "same"
    conv = layers.SamePadConv1d(2, 2, 4, stride=3)
    assert conv.static_padding is None
    for n in (5, 6, 7):
        x = torch.randn(1, 2, n)
        left, right = layers.same_padding(4, 3, n)
        expected = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (left, right)), conv.weight, conv.bias, stride=3)
        torch.testing.assert_close(conv(x), expected)


@pytest.mark.parametrize("grad", [False, True])
def test_torch_compile_fullgraph(grad):
    """No graph breaks (fullgraph=True) in inference and training; same outputs as eager. The aot_eager backend
    captures and functionalises the whole graph like inductor does, without its minute of C++ codegen."""
    torch._dynamo.reset()
    torch.manual_seed(2)
    model = AnyECGForDiagnosis(tiny_config()).eval()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 12, 1000)
    with torch.set_grad_enabled(grad):
        expected = model(x).logits
        got = compiled(x).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    if grad:
        got.sum().backward()
        assert model.classifier.weight.grad is not None


def test_configure_cpu_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads(1) == 1 == torch.get_num_threads()
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert default_num_threads() == available_cpus() == len(os.sched_getaffinity(0))
        assert configure_cpu_threads() == available_cpus()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_cpu_threads() == 1
        with pytest.raises(ValueError, match="num_threads"):
            configure_cpu_threads(0)
    finally:
        torch.set_num_threads(before)


def test_bf16_autocast_runs_and_stays_close():
    """The layers work under autocast (the GPU bf16 path); on CPU we only check dtypes and closeness, not speed."""
    torch.manual_seed(6)
    model = AnyECGForDiagnosis(tiny_config()).eval()
    x = torch.randn(3, 12, 1000)
    with torch.inference_mode():
        expected = model(x).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.logits.float()).all()
    assert (out.logits.float() - expected).abs().max() < 0.1 * expected.abs().max() + 0.05


def test_input_gradients_on_flat_signal_match_baseline(baseline):
    """Flat (zero-filled) leads give exact ties in the shortcut max-pool; the input gradient (what attribution
    methods use) must still follow the released max-pool, not split ties."""
    torch.manual_seed(7)
    model = AnyECGModel(tiny_config()).eval()
    reference = baseline.from_anyecg(model)
    x = torch.zeros(2, 12, 301)
    x[1, :6] = torch.randn(6, 301)  # second ECG: half the leads missing
    grads = []
    for net in (lambda v: model(v).pooler_output, reference):
        v = x.clone().requires_grad_(True)
        (net(v) * torch.linspace(-1, 1, 32)).sum().backward()
        grads.append(v.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
