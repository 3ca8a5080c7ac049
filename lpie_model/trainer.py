"""The model, optimiser and compiled steps of a run (`Trainer`), validation, TensorBoard images,
checkpoint restore, the reduce-on-plateau rule and the run summary."""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from lpie_data import storage
from lpie_data.errors import DataError, OutputError
from lpie_data.jsonfile import write_json
from lpie_model.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from lpie_model.recipe import Recipe
from lpie_model.rundir import (
    CHECKPOINT_DIR,
    SUMMARY_FILE,
    read_summary,
)

TB_IMAGE_SIDE = 256  # validation images in TensorBoard are centre crops of at most this side


def seed_everything(seed: int, deterministic: bool) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


class Trainer:
    """The model, optimiser, checkpointed state and compiled steps of one run."""

    def __init__(self, recipe: Recipe, strategy: Any, run_dir: str, chief: bool) -> None:
        import keras
        import tensorflow as tf

        from lpie_model.losses import combined_loss
        from lpie_model.lpienet import build_lpienet
        from lpie_model.metrics import psnr_tf, ssim_tf

        self.recipe = recipe
        self.strategy = strategy
        self.global_batch = recipe.data.batch_size
        with strategy.scope():
            self.model = build_lpienet(recipe.model)
            self.optimizer = keras.optimizers.Adam(learning_rate=recipe.train.lr)
            self.optimizer.build(self.model.trainable_variables)
            self.state = {
                "epoch": tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch"),
                "plateau_wait": tf.Variable(0, dtype=tf.int64, trainable=False),
                "plateau_best": tf.Variable(-math.inf, dtype=tf.float64, trainable=False),
                "best_psnr": tf.Variable(-math.inf, dtype=tf.float64, trainable=False),
                "best_ssim": tf.Variable(0.0, dtype=tf.float64, trainable=False),
                "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            }
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, **self.state
        )
        ckpt_dir = storage.join(run_dir, CHECKPOINT_DIR)
        #: A non-chief worker's checkpoint folder: it must save too (collectives), but somewhere
        #: private, removed by close().
        self.private_dir: str | None = None
        if not chief:
            ckpt_dir = self.private_dir = tempfile.mkdtemp(prefix="lpie-worker-ckpt-")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=2)
        loss_fn = combined_loss(recipe.train.alpha, recipe.train.beta)
        model, optimizer, global_batch = self.model, self.optimizer, self.global_batch

        def replica_train(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(y, pred), global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        def replica_eval(x: Any, y: Any) -> tuple[Any, Any, Any]:
            pred = model(x, training=False)
            n = tf.cast(tf.shape(x)[0], tf.float64)
            return (tf.reduce_sum(tf.cast(psnr_tf(y, pred), tf.float64)),
                    tf.reduce_sum(tf.cast(ssim_tf(y, pred), tf.float64)), n)

        sum_ = tf.distribute.ReduceOp.SUM

        # Taking the iterator (not its tensors) traces once per element spec, whose H and W are
        # unknown: one compiled step for every crop size.
        @tf.function
        def train_step(iterator: Any) -> Any:
            x, y = next(iterator)
            return strategy.reduce(sum_, strategy.run(replica_train, args=(x, y)), axis=None)

        # Validation pairs go whole to every replica (full images differ in size, and an empty
        # per-replica batch is not safe); each replica computes the same sums.
        @tf.function(reduce_retracing=True)
        def eval_step(x: Any, y: Any) -> Any:
            results = strategy.run(replica_eval, args=(x, y))
            return [strategy.experimental_local_results(r)[0] for r in results]

        @tf.function(reduce_retracing=True)
        def predict(x: Any) -> Any:
            return strategy.run(lambda v: model(v, training=False), args=(x,))

        self.train_step, self.eval_step, self._predict = train_step, eval_step, predict

    def close(self) -> None:
        """Remove a non-chief worker's private checkpoints (nothing reads them: a resumed run
        restores the chief's); the chief's stay in the run folder."""
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)
            self.private_dir = None

    def predict_local(self, x: Any) -> Any:
        """Model output for a plain batch (computed on every replica; the first one's result)."""
        return self.strategy.experimental_local_results(self._predict(x))[0]

    @property
    def lr(self) -> float:
        return float(self.optimizer.learning_rate.numpy())

    def set_lr(self, lr: float) -> None:
        self.optimizer.learning_rate.assign(lr)

    def value(self, name: str) -> Any:
        return self.state[name].numpy()


def input_baseline(val_ds: Any) -> tuple[float, float, int]:
    """Mean PSNR and SSIM of the validation inputs against their targets, and the pair count."""
    import tensorflow as tf

    from lpie_model.metrics import psnr_tf, ssim_tf

    psnr, ssim, n = 0.0, 0.0, 0
    for x, y in val_ds.batch(1):
        psnr += float(tf.reduce_sum(psnr_tf(y, x)))
        ssim += float(tf.reduce_sum(ssim_tf(y, x)))
        n += int(tf.shape(x)[0])
    if n == 0:
        raise DataError("the validation split produced no pairs")
    return psnr / n, ssim / n, n


def validate(trainer: Trainer, val_ds: Any) -> tuple[float, float]:
    """Mean validation PSNR and SSIM over all pairs (each at its own size)."""
    psnr, ssim, n = 0.0, 0.0, 0.0
    for x, y in val_ds.batch(1):
        p, s, c = trainer.eval_step(x, y)
        psnr, ssim, n = psnr + float(p), ssim + float(s), n + float(c)
    if n == 0:
        raise DataError("validation produced no pairs")
    return psnr / n, ssim / n


def log_images(trainer: Trainer, images: list[tuple[Any, Any]], epoch: int) -> None:
    """input | output | target strips of a few validation pairs, into the current writer."""
    import tensorflow as tf

    from lpie_model.data import centre_crop

    for i, (x, y) in enumerate(images):
        x, y = centre_crop(x, TB_IMAGE_SIDE), centre_crop(y, TB_IMAGE_SIDE)
        out = trainer.predict_local(x[None])[0]
        strip = tf.clip_by_value(tf.concat([x, out, y], axis=1), 0.0, 1.0)
        tf.summary.image(f"input_output_target/{i}", strip[None], step=epoch)


def restore(trainer: Trainer, run_dir: str) -> tuple[int, list[str]]:
    """Restore the newest usable checkpoint of ``run_dir``; return its epoch and notes.

    Checkpoints are tried newest first (``ckpt-N.index`` files, whether or not the
    ``checkpoint`` index file survived); a damaged one is skipped with a note. Without a usable
    one a run that finished epochs is refused (OutputError): starting over would overwrite its
    best weights, metrics and summary. The best PSNR recorded in summary.json is kept when it is
    higher than the checkpoint's, so an older checkpoint never lets a worse model replace
    ``best.weights.h5``. Every worker restores from the run's shared checkpoints.
    """
    import re

    summary = read_summary(run_dir)
    done = int(summary.get("epochs_done", 0)) if summary else 0
    ckpt_dir = storage.join(run_dir, CHECKPOINT_DIR)
    numbers = []
    if storage.exists(ckpt_dir):
        for name in storage.listdir(ckpt_dir):
            m = re.fullmatch(r"ckpt-(\d+)\.index", name)
            if m:
                numbers.append(int(m.group(1)))
    notes: list[str] = []
    restored = None
    for n in sorted(numbers, reverse=True):
        prefix = storage.join(ckpt_dir, f"ckpt-{n}")
        try:
            trainer.checkpoint.restore(prefix).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - any failure to read it makes it unusable
            detail = (getattr(e, "message", "") or str(e)).splitlines()[0][:200]
            notes.append(f"{prefix}: damaged checkpoint, skipped ({type(e).__name__}: {detail})")
            continue
        restored = n
        break
    if restored is None:
        if done:
            why = "every checkpoint is damaged" if numbers else f"no checkpoint in {ckpt_dir}"
            raise OutputError(
                f"{run_dir}: cannot resume: {why}, but summary.json says {done} epochs were done; "
                f"starting over would replace its {WEIGHTS_FILE} (best epoch "
                f"{summary.get('best_epoch')}). Export or copy it, then train into a new --out"
            )
        return 0, notes
    if notes:
        notes.append(f"resumed from the older checkpoint ckpt-{restored}")
    best = summary.get("best_val_psnr") if summary else None
    if (isinstance(best, int | float) and best > float(trainer.value("best_psnr"))
            and storage.exists(storage.join(run_dir, WEIGHTS_FILE))):
        trainer.state["best_psnr"].assign(float(best))
        trainer.state["best_ssim"].assign(float(summary.get("best_val_ssim") or 0.0))
        trainer.state["best_epoch"].assign(int(summary.get("best_epoch") or 0))
    return int(trainer.value("epoch")), notes


@dataclass(frozen=True)
class PlateauState:
    """Counters of the reduce-on-plateau rule: best PSNR seen, epochs since, learning rate."""

    best: float
    wait: int
    lr: float


def plateau_step(state: PlateauState, psnr: float, tr: Any) -> PlateauState:
    """One epoch of ReduceLROnPlateau on validation PSNR (``tr``: the [train] recipe).

    A PSNR above ``best + plateau_min_delta`` resets the wait; otherwise after
    ``plateau_patience`` epochs the rate is multiplied by ``plateau_factor`` (not below
    ``min_lr``) and the wait starts again.
    """
    if psnr > state.best + tr.plateau_min_delta:
        return PlateauState(psnr, 0, state.lr)
    if state.wait + 1 >= tr.plateau_patience:
        return PlateauState(state.best, 0, max(state.lr * tr.plateau_factor, tr.min_lr))
    return PlateauState(state.best, state.wait + 1, state.lr)


def plateau(trainer: Trainer, psnr: float, tr: Any) -> None:
    s = trainer.state
    new = plateau_step(
        PlateauState(float(s["plateau_best"].numpy()), int(s["plateau_wait"].numpy()), trainer.lr),
        psnr, tr,
    )
    s["plateau_best"].assign(new.best)
    s["plateau_wait"].assign(new.wait)
    if new.lr != trainer.lr:
        trainer.set_lr(new.lr)


def write_summary(run_dir: str, trainer: Trainer, recipe: Recipe, epochs_done: int,
                   input_psnr: float, input_ssim: float) -> None:
    best = float(trainer.value("best_psnr"))
    write_json(storage.join(run_dir, SUMMARY_FILE), {
        "status": "finished" if epochs_done >= recipe.train.epochs else "running",
        "epochs_done": epochs_done,
        "epochs": recipe.train.epochs,
        "best_epoch": int(trainer.value("best_epoch")),
        "best_val_psnr": best if math.isfinite(best) else None,
        "best_val_ssim": float(trainer.value("best_ssim")),
        "input_val_psnr": input_psnr,
        "input_val_ssim": input_ssim,
        "learning_rate": trainer.lr,
        "weights": WEIGHTS_FILE,
        "model": CONFIG_FILE,
    })
