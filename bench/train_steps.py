"""Training speed of LPIENet: optimiser steps per second at batch 4, crops 256 and 400.

Runs the trainer's own compiled step (`lpie_model.train.Trainer`: forward, the paper's loss,
backward, Adam) on batches already in memory, so only the network and the optimiser are timed.
The first steps (tracing and graph optimisation) are left out.

Run: .venv/bin/python bench/train_steps.py [--crops 256 400] [--steps 10] [--variant base]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def machine() -> dict[str, Any]:
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus, "tensorflow": tf.__version__,
            "python": platform.python_version(), "load_average_1min": load}


def make_trainer(variant: str = "base", batch: int = 4) -> Any:
    """The trainer of a default-strategy run (its checkpoint folder is a temporary one)."""
    import tensorflow as tf

    from lpie_model.recipe import recipe_from_dict
    from lpie_model.trainer import Trainer

    recipe = recipe_from_dict({"model": {"variant": variant},
                               "data": {"datasets": [{"path": "unused"}], "batch_size": batch}})
    return Trainer(recipe, tf.distribute.get_strategy(), tempfile.mkdtemp(), chief=False)


def steps_per_second(trainer: Any, crop: int, batch: int = 4, steps: int = 10,
                     warmup: int = 3) -> float:
    """Optimiser steps per second on random (batch, crop, crop, 3) pairs held in memory."""
    import tensorflow as tf

    from lpie_model.data import random_crop_pair

    y = tf.random.uniform((crop + 16, crop + 16, 3), seed=1)
    x = tf.clip_by_value(y + tf.random.normal(y.shape, stddev=0.05, seed=2), 0.0, 1.0)
    # Crops of a slightly larger pair, as the training pipeline makes them (H and W of the
    # element spec unknown); cutting them costs next to nothing.
    ds = (tf.data.Dataset.from_tensors((x, y)).repeat().enumerate()
          .map(lambda i, p: random_crop_pair(p[0], p[1], crop, crop, tf.stack([i, i])))
          .batch(batch, drop_remainder=True).prefetch(2))
    strategy = trainer.strategy
    iterator = iter(strategy.experimental_distribute_dataset(ds))
    for _ in range(warmup):
        float(trainer.train_step(iterator))
    t = time.perf_counter()
    for _ in range(steps):
        float(trainer.train_step(iterator))
    return steps / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, nargs="+", default=[256, 400])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--variant", default="base")
    parser.add_argument("--deterministic", action="store_true",
                        help="enable TensorFlow op determinism, as recipes do by default")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    if args.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    trainer = make_trainer(args.variant, args.batch)
    results = []
    for crop in args.crops:
        sps = steps_per_second(trainer, crop, args.batch, args.steps)
        results.append({"crop": crop, "batch": args.batch, "steps_per_s": sps,
                        "examples_per_s": sps * args.batch, "s_per_step": 1 / sps})
    report = {"machine": machine(), "variant": args.variant,
              "deterministic": args.deterministic, "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['machine']}")
    print(f"LPIENet {args.variant}, Adam, loss alpha*SSIM + L1 + beta*Grad, batch {args.batch}, "
          f"op determinism {'on' if args.deterministic else 'off'}")
    print("| crop | steps/s | s/step | examples/s |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['crop']} | {r['steps_per_s']:.2f} | {r['s_per_step']:.3f} | "
              f"{r['examples_per_s']:.1f} |")


if __name__ == "__main__":
    main()
