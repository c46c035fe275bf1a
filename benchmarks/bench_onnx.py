"""ONNX Runtime vs PyTorch on CPU (issue 9, part 4b), same run, full-size 12-lead ECGFounder with the fixture's
seeded weights.

1. Exports `AnyECGForDiagnosis` with `anyecg_hf.runtime.export_onnx` (dynamic batch and length; export time is
   printed), or uses `--onnx FILE`.
2. Parity: ONNX Runtime vs PyTorch logits on the fixture inputs (4 x 12 x 5000) and the odd-length inputs
   (2 x 12 x 3777), and vs the fixture's expected logits.
3. Throughput (ECGs/s, median [min-max] over interleaved rounds) at each batch size: ONNX Runtime, our PyTorch
   model (`torch.inference_mode`) and the straightforward eager baseline; ratios per round.

    python benchmarks/bench_onnx.py
    python benchmarks/bench_onnx.py --onnx model.onnx --batch-sizes 64 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _speed_common import baseline_for, example_batch, interleaved, machine_line, ratio_summary, seeded_model, summarize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", default=None, help="existing ONNX file of the seeded model (default: export now)")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--threads", type=int, default=None, help="threads for both runtimes (default: available cores)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)

    from anyecg_hf.export import OnnxECGModel, export_onnx
    from anyecg_hf.runtime import configure_cpu_threads
    from anyecg_hf.testing import parity_dir

    threads = configure_cpu_threads(args.threads)
    model, weights = seeded_model()
    baseline = baseline_for(model)
    print(f"machine: {machine_line()}")
    print(f"model: AnyECGForDiagnosis (ECGFounder 12-lead, 150 labels), {weights}, float32")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.onnx) if args.onnx else Path(tmp) / "ecgfounder.onnx"
        if not args.onnx:
            start = time.perf_counter()
            export_onnx(model, path)
            print(f"export_onnx (dynamic batch and length, verified): {time.perf_counter() - start:.1f} s, "
                  f"{path.stat().st_size / 2**20:.0f} MiB")
        runner = OnnxECGModel(path, num_threads=threads)

        parity = parity_dir()
        for name, expected_name in (("inputs_12lead.npy", "logits_12lead.npy"),
                                    ("inputs_odd_length.npy", "logits_odd_length_12lead.npy")):
            if not (parity / name).exists():
                break
            x = np.load(parity / name)
            with torch.inference_mode():
                ref = model(torch.from_numpy(x)).logits.numpy()
            got = runner.run(x)["logits"]
            print(f"parity {name} {x.shape}: ORT vs PyTorch max-abs {np.abs(got - ref).max():.1e}, "
                  f"ORT vs fixture {np.abs(got - np.load(parity / expected_name)).max():.1e}")

        rows = []
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            x = example_batch(batch_size)
            xn = x.numpy()
            with torch.inference_mode():
                rates = interleaved(
                    {"onnxruntime": lambda: runner.run(xn), "pytorch": lambda: model(x).logits, "baseline": lambda: baseline(x)},
                    batch_size, rounds=args.rounds, min_seconds=args.min_seconds,
                )
            rows.append((batch_size, rates))
    print()
    print("| batch | ONNX Runtime ECGs/s | PyTorch (ours) ECGs/s | eager baseline ECGs/s | ORT / PyTorch | ORT / baseline |")
    print("|---:|---:|---:|---:|---:|---:|")
    for batch_size, r in rows:
        print(f"| {batch_size} | {summarize(r['onnxruntime'])} | {summarize(r['pytorch'])} | {summarize(r['baseline'])} | "
              f"{ratio_summary(r['onnxruntime'], r['pytorch'])} | {ratio_summary(r['onnxruntime'], r['baseline'])} |")
    print(f"\n{threads} threads for both runtimes; median [min-max] over rounds; ratios within each round")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
