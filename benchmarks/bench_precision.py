"""Reduced precision on CPU (issue 19): agreement with float32 and speed, ours fp32 / ours bf16 / the eager
baseline at 1 and 2 threads, in ONE run on the same machine.

Model: `AnyECGForDiagnosis` with the parity fixture's seeded ECGFounder weights (the full 30.8 M-parameter
12-lead network, 150 conditions). Records: the 50 CinC 2021 records of `tests/assets/data/cinc2021`, preprocessed
by `AnyECGFeatureExtractor`.

1. Agreement of every reduced-precision path with float32 (the reference): max |Δprobability| over all
   (record, condition) pairs, the fraction of those decisions that flip at the model's thresholds
   (`config.label_space.thresholds`, 0.5 each for these weights), and top-5 agreement (the fraction of records
   whose five highest-scoring conditions are the same set; and the mean overlap). Paths:
   - `bf16 autocast`: `runtime.precision.autocast(torch.bfloat16)` (what `--precision bf16` runs; weights fp32);
   - `bf16 weights`: a copy of the model cast to bfloat16, input bfloat16 (no per-call weight casts);
   - `fp16 autocast`: only on CPUs with native float16 (refused elsewhere, as `--precision fp16` is);
   - with `--int8`: ONNX Runtime int8, dynamic quantisation and static QDQ quantisation (per-channel, calibrated
     on 16 of the records), from the float32 ONNX export.
2. Speed (batch `--batch`, ECGs/s, median [min-max] over interleaved rounds; ratios taken per round, so load from
   other jobs on a shared machine hits every candidate alike): for each thread count, the eager baseline
   (`baseline_net1d.py`), ours fp32, ours bf16 autocast, ours bf16 weights (and the int8 files with `--int8`).

    python benchmarks/bench_precision.py                          # agreement + speed at 1 and 2 threads, batch 64
    python benchmarks/bench_precision.py --threads 2 --rounds 5 --int8
    python benchmarks/bench_precision.py --skip-speed             # the agreement table only
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _speed_common import baseline_for, interleaved, machine_line, ratio_summary, seeded_model, summarize


def cinc_inputs() -> tuple[np.ndarray, list[str]]:
    """The 50 bundled CinC records, preprocessed (50, 12, 5000) float32, and their names."""
    import wfdb

    from anyecg_hf import AnyECGFeatureExtractor
    from anyecg_hf.testing import assets_dir

    folder = assets_dir() / "data" / "cinc2021"
    names = sorted(p.stem for p in folder.glob("*.hea"))
    signals = [wfdb.rdsamp(str(folder / n))[0].T for n in names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a zeroed lead is masked (a quality warning), as in a real job
        values = AnyECGFeatureExtractor()(signals, sampling_rate=500)["input_values"]
    return np.ascontiguousarray(values), names


def agreement(p_ref: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> dict:
    """max |Δp|, decision flips at `thresholds` (fraction and count), top-5 same-set fraction and mean overlap."""
    flips = (p_ref >= thresholds) != (p >= thresholds)
    top_ref, top = np.argsort(-p_ref, axis=1)[:, :5], np.argsort(-p, axis=1)[:, :5]
    overlap = np.array([len(set(a) & set(b)) for a, b in zip(top_ref, top)])
    return {"max_dp": float(np.abs(p - p_ref).max()), "flip_frac": float(flips.mean()), "flips": int(flips.sum()),
            "pairs": int(flips.size), "top5_same": float((overlap == 5).mean()), "top5_overlap": float(overlap.mean() / 5)}


def probabilities(fn, x: np.ndarray, batch: int = 25) -> np.ndarray:
    return np.concatenate([fn(x[a:a + batch]) for a in range(0, len(x), batch)]).astype(np.float64)


def torch_paths(model) -> dict:
    """name -> callable(np batch) -> probabilities, for every reduced-precision PyTorch path this CPU allows."""
    from anyecg_hf.runtime.precision import autocast, native_fp16

    bf16_model = copy.deepcopy(model).to(torch.bfloat16)

    def run(dtype=None, m=model, cast_input=None):
        def call(x):
            t = torch.from_numpy(x)
            if cast_input is not None:
                t = t.to(cast_input)
            with torch.inference_mode(), autocast(dtype, "cpu"):
                return torch.sigmoid(m(t).logits.float()).numpy()
        return call

    paths = {"fp32": run(), "bf16 autocast": run(torch.bfloat16),
             "bf16 weights": run(m=bf16_model, cast_input=torch.bfloat16)}
    if native_fp16("cpu"):
        paths["fp16 autocast"] = run(torch.float16)
    return paths


def int8_paths(model, x_calib: np.ndarray, folder: Path, threads: int) -> dict:
    """ONNX Runtime int8 files (dynamic, static QDQ per-channel) from the float32 export -> callables."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from anyecg_hf.export import OnnxECGModel, export_onnx

    fp32 = folder / "model.onnx"
    start = time.perf_counter()
    export_onnx(model, fp32, dynamic_length=False, verify=False)
    prep = folder / "model_prep.onnx"
    quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input_values": x_calib[i:i + 1]} for i in range(len(x_calib))])

        def get_next(self):
            return next(self.items, None)

    dyn, stat = folder / "int8_dynamic.onnx", folder / "int8_static.onnx"
    quantize_dynamic(str(prep), str(dyn), weight_type=QuantType.QInt8, per_channel=True)
    quantize_static(str(prep), str(stat), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    print(f"ONNX export + quantisation: {time.perf_counter() - start:.0f} s")
    paths = {}
    for name, path in (("onnx fp32", fp32), ("onnx int8 dynamic", dyn), ("onnx int8 static", stat)):
        session = OnnxECGModel(path, num_threads=threads)
        paths[name] = (lambda x, s=session: 1.0 / (1.0 + np.exp(-s.run(x)["logits"].astype(np.float64))), session)
    return paths


_ONEDNN_PROBE = """
import sys, torch
sys.path.insert(0, {here!r})
from _speed_common import seeded_model, example_batch
from anyecg_hf.runtime.precision import autocast
model, _ = seeded_model()
with torch.inference_mode(), autocast(torch.bfloat16, "cpu"):
    model(example_batch(2))
"""


def onednn_kernels() -> str:
    """Which oneDNN convolution kernels one bf16-autocast forward runs (`ONEDNN_VERBOSE=1`): `N x impl (src dtype)`.

    Native bf16 shows `avx512_core_bf16` / `avx512_core_amx` implementations with `src:bf16`; an emulated path
    shows plain `avx512_core` (or `ref`) ones."""
    import collections
    import os
    import subprocess
    import sys

    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    proc = subprocess.run([sys.executable, "-c", _ONEDNN_PROBE.format(here=here)], env=env, capture_output=True,
                          text=True)
    counts: collections.Counter = collections.Counter()
    for line in proc.stdout.splitlines():
        fields = line.split(",")
        if len(fields) > 8 and fields[3] == "exec" and fields[5] == "convolution":
            src = next((t.split(":")[1] for t in fields[8].split() if t.startswith("src:")), "?")
            counts[f"{fields[6]} (src {src})"] += 1
    return "; ".join(f"{n} x {k}" for k, n in counts.most_common()) or f"no oneDNN convolutions seen (rc {proc.returncode})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts for the speed table")
    parser.add_argument("--batch", type=int, default=64, help="batch size of the speed table (default 64)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per thread count (default 3)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="minimum seconds per measurement")
    parser.add_argument("--int8", action="store_true", help="also ONNX Runtime int8 (dynamic and static)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args(argv)

    from anyecg_hf.runtime import configure_cpu_threads
    from anyecg_hf.runtime.precision import cpu_flags

    thread_counts = [int(t) for t in args.threads.split(",")]
    configure_cpu_threads(max(thread_counts))
    model, weights = seeded_model()
    x, names = cinc_inputs()
    flags = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_fp16", "avx512_fp16", "avx512_vnni", "amx_int8"})
    print(f"machine: {machine_line()}")
    print(f"CPU flags: {' '.join(flags) or '(no native bf16/fp16/int8 flags)'}")
    print(f"model: AnyECGForDiagnosis, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, {weights}; "
          f"{len(x)} CinC 2021 records")
    print(f"oneDNN convolutions of one bf16-autocast forward: {onednn_kernels()}")
    paths = torch_paths(model)
    sessions = {}
    tmp = tempfile.TemporaryDirectory()
    if args.int8:
        for name, (fn, session) in int8_paths(model, x[:16], Path(tmp.name), max(thread_counts)).items():
            paths[name], sessions[name] = fn, session

    if not args.skip_agreement:
        thresholds = np.asarray(model.config.label_space.thresholds if model.config.label_space is not None
                                else [0.5] * model.config.num_labels, dtype=np.float64)
        probs = {name: probabilities(fn, x) for name, fn in paths.items()}
        ref = probs["fp32"]
        print(f"\nagreement with fp32 on {len(x)} records x {ref.shape[1]} conditions "
              f"(thresholds {np.unique(thresholds).round(3).tolist()}; targets max|Δp| <= 0.01, flips < 0.5 %)")
        print("| path | max abs Δp | decision flips | top-5 same set | top-5 overlap |")
        print("|---|---:|---:|---:|---:|")
        for name, p in probs.items():
            if name == "fp32":
                continue
            a = agreement(ref, p, thresholds)
            print(f"| {name} | {a['max_dp']:.4f} | {100 * a['flip_frac']:.3f} % ({a['flips']}/{a['pairs']}) | "
                  f"{100 * a['top5_same']:.0f} % | {100 * a['top5_overlap']:.1f} % |")

    if not args.skip_speed:
        xb = torch.from_numpy(np.ascontiguousarray(np.resize(x, (args.batch, *x.shape[1:]))))
        xb_np = xb.numpy()
        baseline = baseline_for(model.anyecg)
        bf16_model = copy.deepcopy(model).to(torch.bfloat16)
        from anyecg_hf.runtime.precision import autocast

        def ours(dtype=None, m=model, inp=xb):
            def call():
                with torch.inference_mode(), autocast(dtype, "cpu"):
                    return m(inp).logits
            return call

        def base():
            with torch.inference_mode():
                return baseline(xb)

        candidates = {"baseline fp32": base, "ours fp32": ours(), "ours bf16 autocast": ours(torch.bfloat16),
                      "ours bf16 weights": ours(m=bf16_model, inp=xb.to(torch.bfloat16))}
        rows = []
        for threads in thread_counts:
            torch.set_num_threads(threads)
            cands = dict(candidates)
            for name, session in sessions.items():
                if name != "onnx fp32":
                    session.session = _with_threads(session, threads)
                    cands[name] = lambda s=session: s.run(xb_np)
            rates = interleaved(cands, args.batch, rounds=args.rounds, min_seconds=args.min_seconds)
            rows.append((threads, rates))
        print(f"\nspeed, batch {args.batch}, ECGs/s median [min-max] over {args.rounds} interleaved rounds; "
              "ratios per round (targets: ours fp32 >= 1.5x baseline at 2 threads, bf16 >= 1.6x ours fp32)")
        print("| threads | candidate | ECGs/s | vs baseline | vs ours fp32 |")
        print("|---:|---|---:|---:|---:|")
        for threads, rates in rows:
            for name, r in rates.items():
                print(f"| {threads} | {name} | {summarize(r)} | {ratio_summary(r, rates['baseline fp32'])} | "
                      f"{ratio_summary(r, rates['ours fp32'])} |")
    tmp.cleanup()
    return 0


def _with_threads(model, threads: int):
    """A new ONNX Runtime session of `model`'s file with `threads` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model.path), opts, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    raise SystemExit(main())
