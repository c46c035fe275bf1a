"""Backbone inference throughput (issue 9, part 4a): ours vs the straightforward eager baseline, same run.

Both run the full-size 12-lead ECGFounder backbone (30.8 M parameters, 10 s at 500 Hz) with the same weights, in
float32 under `torch.inference_mode`, with the same threads. "ours" is `AnyECGModel` (time-major oneDNN convs,
static padding, fused conv+SiLU); "baseline" is `baseline_net1d.BaselineNet1D`, written like the released code.
Reports ECGs/s per batch size (median [min-max] over interleaved rounds) and the per-round ratio.

    python benchmarks/bench_backbone.py                    # batch 1 and 64, threads = available cores
    python benchmarks/bench_backbone.py --batch-sizes 64 --rounds 7 --threads 2
    python benchmarks/bench_backbone.py --compile          # also torch.compile (inductor), compile time excluded
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)

    from anyecg_hf.runtime import configure_cpu_threads

    configure_cpu_threads(args.threads)
    model, weights = seeded_model()
    backbone = model.anyecg
    baseline = baseline_for(backbone)
    print(f"machine: {machine_line()}")
    print(f"model: ECGFounder 12-lead backbone, {sum(p.numel() for p in backbone.parameters()) / 1e6:.1f} M parameters, "
          f"{weights}, float32, 12 x 5000 input")
    compiled = None
    if args.compile:
        compiled = torch.compile(backbone)
    rows = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        x = example_batch(batch_size)
        with torch.inference_mode():
            err = (backbone(x).pooler_output - baseline(x)).abs().max().item()
            candidates = {"ours": lambda: backbone(x).pooler_output, "baseline": lambda: baseline(x)}
            if compiled is not None:
                start = time.perf_counter()
                compiled(x)
                print(f"torch.compile warm-up (batch {batch_size}): {time.perf_counter() - start:.0f} s")
                candidates["compiled"] = lambda: compiled(x).pooler_output
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
