"""Training-step throughput (issue 9, part 4d): forward + backward + AdamW on the full 12-lead model (backbone and
150-label head, masked BCE), ours vs the straightforward eager baseline, same run, same weights and batches.

"ours" is `AnyECGForDiagnosis` (time-major oneDNN convs in the autograd path; the fused inference ops are off
when gradients are recorded); "baseline" is `baseline_net1d.BaselineNet1D` + the same linear head and loss.
Reports ECGs/s (median [min-max] over interleaved rounds) and the per-round ratio. On a GPU machine pass
`--device cuda --bf16` to time bf16 autocast as well.

    python benchmarks/bench_train_step.py                  # batch 32, threads = available cores
    python benchmarks/bench_train_step.py --batch-size 16 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import torch.nn.functional as F

from _speed_common import baseline_for, example_batch, interleaved, machine_line, ratio_summary, seeded_model, summarize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU; very slow on CPUs without AMX)")
    args = parser.parse_args(argv)

    from anyecg_hf.runtime import configure_cpu_threads

    configure_cpu_threads(args.threads)
    device = torch.device(args.device)
    model, weights = seeded_model()
    baseline = baseline_for(model).to(device).train()
    head = torch.nn.Linear(model.config.hidden_size, model.config.num_labels).to(device)
    head.load_state_dict(model.classifier.state_dict())
    model = model.to(device).train()
    print(f"machine: {machine_line()}")
    print(f"model: AnyECGForDiagnosis full model (30.8 M parameters), {weights}, batch {args.batch_size}, "
          f"{'bf16 autocast' if args.bf16 else 'float32'}, AdamW lr 1e-5")

    x = example_batch(args.batch_size).to(device)
    labels = (torch.rand(args.batch_size, model.config.num_labels, generator=torch.Generator().manual_seed(0)) < 0.1).float().to(device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    opt_ours = torch.optim.AdamW(model.parameters(), lr=1e-5)
    opt_base = torch.optim.AdamW(list(baseline.parameters()) + list(head.parameters()), lr=1e-5)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step_ours():
        opt_ours.zero_grad(set_to_none=True)
        with autocast():
            loss = model(x, labels=labels).loss
        loss.backward()
        opt_ours.step()
        sync()

    def step_base():
        opt_base.zero_grad(set_to_none=True)
        with autocast():
            loss = F.binary_cross_entropy_with_logits(head(baseline(x)).float(), labels)
        loss.backward()
        opt_base.step()
        sync()

    with torch.no_grad():  # same function before training
        err = (model(x).logits - head(baseline(x))).abs().max().item()
    rates = interleaved({"ours": step_ours, "baseline": step_base}, args.batch_size, rounds=args.rounds,
                        min_seconds=args.min_seconds)
    print()
    print("| batch | ours ECGs/s | baseline ECGs/s | ratio (per round) | max-abs logits before training |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {args.batch_size} | {summarize(rates['ours'])} | {summarize(rates['baseline'])} | "
          f"{ratio_summary(rates['ours'], rates['baseline'])} | {err:.1e} |")
    print("\nforward + backward + AdamW step; median [min-max] over rounds; ratio = ours / baseline within each round")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
