"""Training step with phecode-sized heads (issue 20): `AnyECGForHealthProfiling` with 1,172 diagnosis + 1,172 Cox
risk outputs (masked BCE + vectorised Efron loss over all conditions, no per-condition Python loop) vs the backbone
alone (`AnyECGModel`, loss = mean of the pooled features), forward + backward + AdamW, same run, same batches.

    python benchmarks/bench_profiling_step.py [--batch-size 32] [--conditions 1172] [--rounds 4] [--device cpu]

Targets are sparse as in an EHR cohort: 5 % diagnosis positives, 20 % of entries masked; risk: 3 % events,
30 % not at risk. Reports ECGs/s per side (median [min-max] over interleaved rounds) and the per-round cost ratio
(profiling step time / backbone step time; target < 1.05). On a shared machine that direct ratio is noisy (steps of
seconds, other jobs' load); the heads' own cost (the same heads, losses, backward and AdamW over their parameters,
on pooled features) is also timed over many short calls, and `1 + heads / backbone` printed beside it.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _speed_common import example_batch, interleaved, machine_line, summarize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--conditions", type=int, default=1172)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from anyecg_hf import AnyECGConfig, LabelSpace
    from anyecg_hf.modeling import AnyECGForHealthProfiling, AnyECGModel
    from anyecg_hf.runtime import configure_cpu_threads

    configure_cpu_threads(args.threads)
    device = torch.device(args.device)
    k, b = args.conditions, args.batch_size
    space = LabelSpace.from_names([f"{i:03d}.{i % 10}" for i in range(k)], code_system="phecode")
    torch.manual_seed(0)
    profiler = AnyECGForHealthProfiling(AnyECGConfig(label_space=space, risk_label_space=space, risk_horizons=[1, 5, 10],
                                                     risk_head_type="cox")).to(device).train()
    backbone = AnyECGModel(AnyECGConfig()).to(device).train()
    backbone.load_state_dict(profiler.anyecg.state_dict())
    g = torch.Generator().manual_seed(0)
    x = example_batch(b).to(device)
    labels = (torch.rand(b, k, generator=g) < 0.05).float().to(device)
    label_mask = (torch.rand(b, k, generator=g) >= 0.2).to(device)
    times = (torch.rand(b, k, generator=g) * 10).to(device)
    events = (torch.rand(b, k, generator=g) < 0.03).float().to(device)
    at_risk = (torch.rand(b, k, generator=g) >= 0.3).to(device)
    opt_p = torch.optim.AdamW(profiler.parameters(), lr=1e-5)
    opt_b = torch.optim.AdamW(backbone.parameters(), lr=1e-5)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step_profiling():
        opt_p.zero_grad(set_to_none=True)
        out = profiler(input_values=x, labels=labels, label_mask=label_mask, event_times=times, events=events,
                       at_risk_mask=at_risk)
        out.loss.backward()
        opt_p.step()
        sync()

    def step_backbone():
        opt_b.zero_grad(set_to_none=True)
        backbone(input_values=x).pooler_output.mean().backward()
        opt_b.step()
        sync()

    class _Pooled(torch.nn.Module):  # stands in for the backbone: the heads' cost alone
        def __init__(self, pooled):
            super().__init__()
            self.pooled = pooled

        def forward(self, *args, **kwargs):
            from types import SimpleNamespace

            return SimpleNamespace(pooler_output=self.pooled, hidden_states=None)

    heads = AnyECGForHealthProfiling(profiler.config).to(device).train()
    heads.anyecg = _Pooled(torch.randn(b, profiler.config.hidden_size, device=device, requires_grad=True))
    opt_h = torch.optim.AdamW(heads.parameters(), lr=1e-5)

    def step_heads():
        opt_h.zero_grad(set_to_none=True)
        heads(input_values=x, labels=labels, label_mask=label_mask, event_times=times, events=events,
              at_risk_mask=at_risk).loss.backward()
        opt_h.step()
        sync()

    n_params = sum(p.numel() for p in profiler.parameters()) - sum(p.numel() for p in backbone.parameters())
    print(f"machine: {machine_line()}")
    print(f"batch {b}, {k} diagnosis + {k} Cox risk outputs ({n_params:,} head parameters), float32, AdamW")
    rates = interleaved({"profiling": step_profiling, "backbone": step_backbone}, b, rounds=args.rounds,
                        min_seconds=args.min_seconds)
    head_rates = interleaved({"heads": step_heads}, b, rounds=args.rounds, min_seconds=1.0)["heads"]
    cost = rates["backbone"] / rates["profiling"]
    added = np.median(rates["backbone"]) / np.median(head_rates)
    print()
    print("| batch | conditions | backbone ECGs/s | profiling ECGs/s | step cost ratio (per round) | heads alone ECGs/s "
          "| 1 + heads / backbone |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {b} | {k} + {k} | {summarize(rates['backbone'])} | {summarize(rates['profiling'])} | "
          f"{np.median(cost):.3f} [{cost.min():.3f}-{cost.max():.3f}] | {summarize(head_rates)} | {1 + added:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
