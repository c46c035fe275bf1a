"""Backbone inference throughput (issue 9, part 4a): ours vs the straightforward eager baseline, same run.

Both run the full-size 12-lead ECGFounder backbone (30.8 M parameters, 10 s at 500 Hz) with the same weights, in
float32 under `torch.inference_mode`, with the same threads. "ours" is `AnyECGModel` (time-major oneDNN convs,
static padding, fused conv+SiLU); "baseline" is `baseline_net1d.BaselineNet1D`, written like the released code.
Reports ECGs/s per batch size (median [min-max] over interleaved rounds) and the per-round ratio.

    python benchmarks/bench_backbone.py                    # batch 1 and 64, threads = available cores
    python benchmarks/bench_backbone.py --batch-sizes 64 --rounds 7 --threads 2
    python benchmarks/bench_backbone.py --compile          # also torch.compile (inductor), compile time excluded
    python benchmarks/bench_backbone.py --device cuda --bf16 --batch-sizes 256   # a lent GPU (issue 9's figure)
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from _speed_common import (
    baseline_for,
    example_batch,
    interleaved,
    machine_line,
    ratio_summary,
    seeded_model,
    summarize,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="1,64", help="comma-separated batch sizes (default 1,64)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: available cores)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per batch size (default 5)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="minimum seconds per measurement")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(model) (inductor)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for both models (GPU; very slow on "
                        "CPUs without native bf16)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    from anyecg_hf.runtime import configure_cpu_threads

    configure_cpu_threads(args.threads)
    model, weights = seeded_model()
    backbone = model.anyecg
    baseline = baseline_for(backbone).to(device)
    backbone = backbone.to(device)
    print(f"machine: {machine_line()}" + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    print(f"model: ECGFounder 12-lead backbone, {sum(p.numel() for p in backbone.parameters()) / 1e6:.1f} M parameters, "
          f"{weights}, {'bfloat16 autocast' if args.bf16 else 'float32'}, 12 x 5000 input, {device}")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(fn):  # the result is ready when the call returns (GPU kernels are asynchronous)
        def call():
            with autocast():
                out = fn()
            sync()
            return out
        return call

    compiled = None
    if args.compile:
        compiled = torch.compile(backbone)
    rows = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        x = example_batch(batch_size).to(device)
        with torch.inference_mode():
            ours, base = timed(lambda: backbone(x).pooler_output), timed(lambda: baseline(x))
            err = (ours().float() - base().float()).abs().max().item()
            candidates = {"ours": ours, "baseline": base}
            if compiled is not None:
                start = time.perf_counter()
                compiled(x)
                print(f"torch.compile warm-up (batch {batch_size}): {time.perf_counter() - start:.0f} s")
                candidates["compiled"] = timed(lambda: compiled(x).pooler_output)
            rates = interleaved(candidates, batch_size, rounds=args.rounds, min_seconds=args.min_seconds)
        rows.append((batch_size, rates, err))

    print()
    print("| batch | ours ECGs/s | baseline ECGs/s | ratio (per round) | max-abs ours vs baseline |")
    print("|---:|---:|---:|---:|---:|")
    for batch_size, rates, err in rows:
        print(f"| {batch_size} | {summarize(rates['ours'])} | {summarize(rates['baseline'])} | "
              f"{ratio_summary(rates['ours'], rates['baseline'])} | {err:.1e} |")
        if "compiled" in rates:
            print(f"| {batch_size} (torch.compile) | {summarize(rates['compiled'])} | {summarize(rates['baseline'])} | "
                  f"{ratio_summary(rates['compiled'], rates['baseline'])} | |")
    print("\nmedian [min-max] over rounds; ratio = ours / baseline within each round")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
