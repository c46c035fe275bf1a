"""Compute precision: `resolve_precision` rules (native hardware only for `auto`, fp16 refused on CPUs without it),
the autocast context manager, the `--precision` / deprecated `--dtype` arguments, and the agreement of bf16 with
the float32 fixture on the parity weights."""

import argparse

import numpy as np
import pytest
import torch

from anyecg_hf.runtime import precision as P


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has exactly the given feature flags."""
    def set_flags(*flags):
        monkeypatch.setattr(P, "cpu_flags", lambda: frozenset(flags))
    return set_flags


@pytest.mark.parametrize("name, expected", [("fp32", "fp32"), ("float32", "fp32"), (None, "fp32"),
                                            ("BF16", "bf16"), ("bfloat16", "bf16"), (torch.bfloat16, "bf16"),
                                            ("float16", "fp16"), ("half", "fp16"), ("auto", "auto")])
def test_normalize_precision_spellings(name, expected):
    assert P.normalize_precision(name) == expected


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="fp32, bf16, fp16, auto.*'int4'"):
        P.resolve_precision("int4", "cpu")


def test_auto_picks_bf16_only_on_native_cpus(cpu_with):
    cpu_with("avx512f", "avx512_bf16")
    assert P.resolve_precision("auto", "cpu") is torch.bfloat16
    cpu_with("amx_bf16", "amx_tile")
    assert P.resolve_precision("auto", "cpu") is torch.bfloat16
    cpu_with("avx512f", "avx512_vnni", "avx2")  # Ice Lake / Zen 3: bf16 would be emulated
    assert P.resolve_precision("auto", "cpu") is None
    assert P.resolve_precision("fp32", "cpu") is None


def test_explicit_bf16_without_native_support_warns(cpu_with):
    cpu_with("avx2")
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert P.resolve_precision("bf16", "cpu") is torch.bfloat16


def test_fp16_on_cpu_refused_unless_native(cpu_with):
    cpu_with("avx512_bf16")
    with pytest.raises(ValueError, match="no native float16.*use --precision bf16"):
        P.resolve_precision("fp16", "cpu")
    cpu_with("avx2")
    with pytest.raises(ValueError, match="use --precision fp32"):
        P.resolve_precision("fp16", torch.device("cpu"))
    cpu_with("amx_fp16", "amx_bf16")
    assert P.resolve_precision("fp16", "cpu") is torch.float16


@pytest.mark.parametrize("capability, auto", [((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16), ((7, 5), None)])
def test_cuda_auto_follows_compute_capability(monkeypatch, capability, auto):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert P.resolve_precision("auto", "cuda:0") is auto
    assert P.resolve_precision("fp16", "cuda") is torch.float16


def test_real_cpu_detection_agrees_with_proc_cpuinfo():
    """/proc/cpuinfo (read here independently) and PyTorch's cpuinfo probe must tell the same bf16 story."""
    from pathlib import Path

    P.cpu_flags.cache_clear()
    proc = Path("/proc/cpuinfo")
    if not proc.exists():
        pytest.skip("no /proc/cpuinfo")
    line = next((ln for ln in proc.read_text().splitlines() if ln.startswith(("flags", "Features"))), "")
    listed = set(line.partition(":")[2].split())
    if "avx512_bf16" in listed:
        assert "avx512_bf16" in P.cpu_flags() and P.native_bf16("cpu")
    assert bool(torch.cpu._is_avx512_bf16_supported()) == ("avx512_bf16" in listed)
    assert P.native_bf16("cpu") == bool(listed & {"avx512_bf16", "amx_bf16", "bf16"})


def test_autocast_context_changes_the_compute_dtype():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with P.autocast(None, "cpu"):
        assert lin(x).dtype == torch.float32
    with P.autocast(torch.bfloat16, "cpu"):
        assert lin(x).dtype == torch.bfloat16
    assert lin.weight.dtype == torch.float32  # weights untouched
    assert [P.precision_label(d) for d in (None, torch.float32, torch.bfloat16, torch.float16)] == \
        ["fp32", "fp32", "bf16", "fp16"]


def _parser():
    parser = argparse.ArgumentParser()
    P.add_precision_argument(parser)
    return parser


def test_precision_argument_and_deprecated_dtype_alias(capsys):
    assert P.precision_from_args(_parser().parse_args([])) == "fp32"
    assert P.precision_from_args(_parser().parse_args(["--precision", "auto"])) == "auto"
    assert P.precision_from_args(_parser().parse_args(["--dtype", "bfloat16"])) == "bf16"
    assert "--dtype is deprecated; use --precision bf16" in capsys.readouterr().err
    assert "--dtype" not in _parser().format_help()
    with pytest.raises(SystemExit, match="contradicts"):
        P.precision_from_args(_parser().parse_args(["--dtype", "float16", "--precision", "bf16"]))


def test_accelerate_mixed_precision(cpu_with):
    cpu_with("avx512_bf16")
    assert P.accelerate_mixed_precision("auto", "cpu") == "bf16"
    assert P.accelerate_mixed_precision("fp32", "cpu") == "no"
    assert P.accelerate_mixed_precision("no", "cpu") == "no" and P.accelerate_mixed_precision("bf16", "cpu") == "bf16"
    cpu_with("avx2")
    assert P.accelerate_mixed_precision("auto", "cpu") == "no"


def test_bf16_agrees_with_the_float32_fixture(seeded_model_12, parity):
    """bf16 autocast of the full 30.8 M-parameter network on the parity inputs: probabilities within 0.01 of the
    float32 reference outputs (the issue's bound), and the logits really changed (it did run in bf16)."""
    x = torch.from_numpy(np.load(parity / "inputs_12lead.npy"))
    expected = torch.sigmoid(torch.from_numpy(np.load(parity / "logits_12lead.npy")).double())
    with torch.inference_mode(), P.autocast(torch.bfloat16, "cpu"):
        logits = seeded_model_12(x).logits
    assert logits.dtype == torch.bfloat16
    got = torch.sigmoid(logits.double())
    diff = (got - expected).abs().max().item()
    assert 0 < diff <= 0.01
