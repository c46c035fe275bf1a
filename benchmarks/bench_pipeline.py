"""Throughput of `pipeline("ecg-profiling")` vs a hand-written loop (feature extractor + model forward) on the
same records, with the full-size ECGFounder network (seeded weights; no download).

    python benchmarks/bench_pipeline.py [--records 24] [--batch-size 8]

Prints ECGs/s of: the manual loop (baseline, one record at a time), the pipeline one record at a time, and the
pipeline on a list with `batch_size`; each with its ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    import anyecg_hf  # noqa: F401
    from transformers import pipeline

    from anyecg_hf import AnyECGForDiagnosis
    from anyecg_hf.io import read_ecg
    from anyecg_hf.processing import AnyECGFeatureExtractor
    from anyecg_hf.testing import assets_dir, write_seeded_ecgfounder_checkpoint

    paths = sorted(str(p) for p in (assets_dir() / "data" / "cinc2021").glob("*.hea"))
    paths = (paths * (args.records // len(paths) + 1))[: args.records]
    with tempfile.TemporaryDirectory() as tmp:
        pth = write_seeded_ecgfounder_checkpoint(Path(tmp) / "12_lead_ECGFounder.pth")
        model = AnyECGForDiagnosis.from_ecgfounder(pth)
        model.save_pretrained(Path(tmp) / "model")
        pipe = pipeline("ecg-profiling", model=str(Path(tmp) / "model"), device="cpu")
        fe = AnyECGFeatureExtractor.from_model_config(model.config)
        pipe(paths[0])  # warm-up (numba kernels, allocator)

        t = time.perf_counter()
        for p in paths:
            with torch.inference_mode():
                torch.sigmoid(model(**fe(read_ecg(p), return_tensors="pt")).logits)
        base = len(paths) / (time.perf_counter() - t)

        t = time.perf_counter()
        for p in paths:
            pipe(p)
        single = len(paths) / (time.perf_counter() - t)

        t = time.perf_counter()
        pipe(paths, batch_size=args.batch_size)
        batched = len(paths) / (time.perf_counter() - t)

    print(f"threads={torch.get_num_threads()} records={len(paths)}")
    print(f"manual loop (baseline)        {base:7.2f} ECG/s  1.00x")
    print(f"pipeline, one call per record {single:7.2f} ECG/s  {single / base:.2f}x")
    print(f"pipeline, list, batch_size={args.batch_size:<3d} {batched:7.2f} ECG/s  {batched / base:.2f}x")


if __name__ == "__main__":
    main()
