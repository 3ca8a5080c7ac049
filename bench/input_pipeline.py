"""Input pipeline speed: examples/s delivered with crops and augmentation vs examples/s trained.

Writes a temporary lpie dataset of ``--pairs`` uint8 pairs of ``--size`` x ``--size`` pixels
(SIDD tiles are 1000 x 1000 uint8), then, for each crop size, measures
- delivered: examples/s of `lpie_model.data.training_dataset` (parallel shard reads, decode,
  paired random crop, flips, rotations, shuffle, batch, prefetch), iterated alone;
- consumed: examples/s of the trainer's compiled step at the same batch and crop
  (bench/train_steps.py);
and their ratio. Target: the pipeline delivers at least 3x what training consumes.

Run: .venv/bin/python bench/input_pipeline.py [--size 1000] [--pairs 24] [--crops 256 400]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from lpie_data.jobs import JobOptions, WorkItem, run_job  # noqa: E402
from lpie_data.records import Example  # noqa: E402


def produce(item: WorkItem) -> Iterator[Example]:
    """One noisy / clean uint8 pair of a smooth random scene."""
    size, index = item.args
    rng = np.random.default_rng(index)
    coarse = rng.random((size // 16 + 1, size // 16 + 1, 3))
    clean = np.kron(coarse, np.ones((16, 16, 1)))[:size, :size]
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1)
    yield Example(item.key, (noisy * 255).round().astype(np.uint8),
                  (clean * 255).round().astype(np.uint8),
                  {"source": item.key, "box": [0, 0, size, size]})


def write_dataset(out: str, size: int, pairs: int) -> None:
    items = [WorkItem(f"p{i:04d}", "train", (size, i)) for i in range(pairs)]
    run_job(out, "bench", "bench", {"size": size, "pairs": pairs}, items, produce,
            JobOptions(jobs=1, shard_bytes=16 * 2**20))


def delivered_per_second(path: str, crop: int, batch: int, batches: int) -> float:
    from lpie_model.data import training_dataset
    from lpie_model.recipe import DatasetRef

    ds = training_dataset([DatasetRef(path)], crop=(crop, crop), batch_size=batch, seed=0,
                          epoch=1)
    it = iter(ds)
    for _ in range(3):  # fill the shuffle buffer and the prefetch queue
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--crops", type=int, nargs="+", default=[256, 400])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batches", type=int, default=50, help="batches timed (pipeline)")
    parser.add_argument("--steps", type=int, default=8, help="steps timed (training)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    from train_steps import machine, make_trainer, steps_per_second

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ds")
        write_dataset(path, args.size, args.pairs)
        trainer = make_trainer("base", args.batch)
        for crop in args.crops:
            delivered = delivered_per_second(path, crop, args.batch, args.batches)
            consumed = steps_per_second(trainer, crop, args.batch, args.steps) * args.batch
            results.append({"crop": crop, "delivered_examples_per_s": delivered,
                            "consumed_examples_per_s": consumed, "ratio": delivered / consumed})
    report = {"machine": machine(), "dataset": {"size": args.size, "pairs": args.pairs,
                                                "dtype": "uint8"}, "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['machine']}")
    print(f"dataset: {args.pairs} uint8 pairs of {args.size}x{args.size}; batch {args.batch}")
    print("| crop | pipeline examples/s | training examples/s | ratio (target >= 3) |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['crop']} | {r['delivered_examples_per_s']:.1f} | "
              f"{r['consumed_examples_per_s']:.2f} | {r['ratio']:.1f}x |")


if __name__ == "__main__":
    main()
