"""Time the multi-condition Cox loss (vectorised vs. torchsurv per condition) and the discrete-time NLL.

Prints the forward+backward time per call and ratios to baselines measured in the same run: the diagnosis BCE over
the same (batch, conditions) shape, and the torchsurv-per-condition Cox loss. Timings on shared CPUs are noisy;
nothing here is asserted.

    python benchmarks/bench_risk_loss.py [--batch 256] [--conditions 1172] [--event-rate 0.05] [--threads 1]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from anyecg_hf.modeling.survival import cox_partial_likelihood_loss, discrete_time_nll


def timed(fn, repeats):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--conditions", type=int, default=1172)
    parser.add_argument("--event-rate", type=float, default=0.05)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, k = args.batch, args.conditions
    scores = torch.randn(b, k, requires_grad=True)
    times = torch.rand(b, k) * 10
    events = (torch.rand(b, k) < args.event_rate).float()
    mask = (torch.rand(b, k) < 0.95).float()
    labels = (torch.rand(b, k) < 0.1).float()
    z = torch.randn(b, k, args.bins, requires_grad=True)
    edges = torch.linspace(0, 10, args.bins + 1).tolist()

    base = timed(lambda: F.binary_cross_entropy_with_logits(scores, labels).backward(), args.repeats)
    cox = timed(lambda: cox_partial_likelihood_loss(scores, times, events, mask).backward(), args.repeats)
    ts = timed(lambda: cox_partial_likelihood_loss(scores, times, events, mask, implementation="torchsurv").backward(), 1)
    disc = timed(lambda: discrete_time_nll(z, times, events, mask, edges).backward(), args.repeats)
    n_cond = int(((events * mask).sum(0) > 0).sum())
    print(f"batch {b}, {k} conditions ({n_cond} with events), forward+backward per call:")
    print(f"  BCE baseline        {base * 1e3:8.2f} ms")
    print(f"  Cox, torchsurv      {ts * 1e3:8.2f} ms  ({ts / base:.0f}x BCE)")
    print(f"  Cox, vectorised     {cox * 1e3:8.2f} ms  ({cox / base:.1f}x BCE, {ts / cox:.0f}x faster than torchsurv)")
    print(f"  discrete-time NLL   {disc * 1e3:8.2f} ms  ({disc / base:.1f}x BCE)")


if __name__ == "__main__":
    main()
