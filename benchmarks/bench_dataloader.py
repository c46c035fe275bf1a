"""Does data loading keep up with the model? Batches/s of the DataLoader alone vs. the training step.

Builds the 50 CinC records (`../assets/data/cinc2021`) into a dataset, preprocesses it with the model's feature
extractor (`prepare_dataset`, once, cached), then times, in the same run:

* the loader alone: `DataLoader(prepared dataset, ECGDataCollator)` with 0 and 2 workers, with and without
  augmentation (random window among sliding windows, amplitude scaling, noise);
* the loader with on-the-fly preprocessing (raw rows + feature extractor in the collator: no `prepare_dataset`);
* one training step (forward + backward + AdamW) of the full-size ECGFounder backbone (12 leads, 5,000 samples) and
  of a tiny backbone.

The ratio loader/step > 1 means the GPU/CPU running the model never waits for data. Run:

    python benchmarks/bench_dataloader.py [--batch-size 32] [--steps 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from anyecg_hf.data import ECGAugmentation, ECGDataCollator, EpochShuffleSampler, build_cinc, prepare_dataset
from anyecg_hf.modeling import AnyECGConfig, AnyECGForDiagnosis
from anyecg_hf.processing import AnyECGFeatureExtractor
from anyecg_hf.testing import assets_dir, tiny_config


def loader_rate(ds, collator, batch_size: int, workers: int, min_batches: int = 60) -> float:
    dl = DataLoader(ds, batch_size=batch_size, sampler=EpochShuffleSampler(len(ds)), collate_fn=collator,
                    num_workers=workers, persistent_workers=workers > 0)
    n, start, epoch = 0, time.perf_counter(), 0
    while n < min_batches:
        dl.sampler.set_epoch(epoch)
        for _ in dl:
            n += 1
        epoch += 1
    return n / (time.perf_counter() - start)


def step_rate(config, batch_size: int, steps: int, device: str = "cpu") -> float:
    model = AnyECGForDiagnosis(config).train().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, config.in_channels, config.num_samples, device=device)
    y = torch.randint(0, 2, (batch_size, config.num_labels), device=device).float()
    for i in range(steps + 1):
        if i == 1:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()  # first step warms up the allocator / kernels
        model(input_values=x, labels=y).loss.backward()
        opt.step()
        opt.zero_grad()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps of the full-size model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device of the training step (the loader always runs on the CPU)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        raw = build_cinc(assets_dir() / "data" / "cinc2021", cache_dir=Path(tmp) / "cache")
        full = AnyECGConfig(label_space=None)  # ECGFounder 12-lead: 5,000 samples at 500 Hz, 150 labels
        fe = AnyECGFeatureExtractor.from_model_config(full, windowing="sliding", window_stride=2500)
        start = time.perf_counter()
        prepared = prepare_dataset(raw, fe, num_proc=2).with_format("numpy")
        prep_time = time.perf_counter() - start
        plain = ECGDataCollator(full.num_samples, 12, full.sampling_rate)
        aug = ECGDataCollator(full.num_samples, 12, full.sampling_rate, augmentation=ECGAugmentation(
            random_crop=True, amplitude_scale=(0.8, 1.2), gaussian_noise=0.02, baseline_wander=0.1))
        on_the_fly = ECGDataCollator(full.num_samples, 12, full.sampling_rate, feature_extractor=fe)
        b = args.batch_size
        rows = [
            ("loader, prepared, 0 workers", loader_rate(prepared, plain, b, 0)),
            ("loader, prepared + augmentation, 0 workers", loader_rate(prepared, aug, b, 0)),
            ("loader, prepared + augmentation, 2 workers", loader_rate(prepared, aug, b, 2)),
            ("loader, raw + feature extractor in collator, 0 workers", loader_rate(raw.with_format("numpy"), on_the_fly, b, 0, 6)),
        ]
        step_full = step_rate(full, b, args.steps, args.device)
        step_tiny = step_rate(tiny_config(num_samples=5000), b, 10, args.device)
    print(f"CinC 50 records; prepare_dataset (sliding windows, 2 processes): {prep_time:.1f} s "
          f"({50 / prep_time:.1f} records/s); batch size {b}; torch threads {torch.get_num_threads()}; step on {args.device}")
    print(f"{'what':58s} {'batches/s':>10s} {'x full step':>12s} {'x tiny step':>12s}")
    for name, rate in rows:
        print(f"{name:58s} {rate:10.2f} {rate / step_full:12.1f} {rate / step_tiny:12.2f}")
    print(f"{'training step, ECGFounder size (31 M parameters)':58s} {step_full:10.2f} {1.0:12.1f} {step_full / step_tiny:12.2f}")
    print(f"{'training step, tiny backbone (testing.tiny_config)':58s} {step_tiny:10.2f} {step_tiny / step_full:12.1f} {1.0:12.2f}")


if __name__ == "__main__":
    main()
