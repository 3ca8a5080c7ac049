"""Training LPIENet from a recipe: a custom loop under a tf.distribute strategy, with exact resume.

Every epoch is a pure function of (recipe, epoch, state at its start): the data pipeline draws
from stateless seeds keyed by (seed, epoch) and, with ``train.deterministic``, TensorFlow's ops
are deterministic, so a run killed at any point and resumed ends with the same weights and the
same metrics rows as an uninterrupted one. The run directory is described in `lpie_model.rundir`.

The library never prints: ``progress`` receives :class:`TrainEvent`s.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpie_data import storage
from lpie_data.errors import ConfigError, DataError, OutputError
from lpie_data.jobs import output_lock
from lpie_data.jsonfile import write_json
from lpie_model.data import (
    SplitInfo,
    check_training_sources,
    damaged_shard,
    inspect_split,
    training_dataset,
    validation_dataset,
)
from lpie_model.recipe import DatasetRef, Recipe
from lpie_model.rundir import (
    CHECKPOINT_DIR,
    DATA_DIR,
    LOG_DIR,
    METRICS_FILE,
    MODEL_FILE,
    RECIPE_FILE,
    SUMMARY_FILE,
    WEIGHTS_FILE,
    check_run_dir,
    read_metrics,
    read_summary,
    resolve_paths,
    write_metrics,
    write_model_json,
)
from lpie_model.strategies import STRATEGIES, is_chief, writes_run_dir

TB_IMAGE_SIDE = 256  # validation images in TensorBoard are centre crops of at most this side


@dataclass(frozen=True)
class EpochRecord:
    """What one finished epoch measured (a row of metrics.csv)."""

    epoch: int
    crop: str
    lr: float
    train_loss: float
    val_psnr: float
    val_ssim: float
    best_val_psnr: float
    seconds: float

    def row(self) -> dict[str, str]:
        return {
            "epoch": str(self.epoch),
            "crop": self.crop,
            "lr": f"{self.lr:.6g}",
            "train_loss": f"{self.train_loss:.6f}",
            "val_psnr": f"{self.val_psnr:.4f}",
            "val_ssim": f"{self.val_ssim:.5f}",
            "best_val_psnr": f"{self.best_val_psnr:.4f}",
            "seconds": f"{self.seconds:.1f}",
        }


@dataclass(frozen=True)
class TrainEvent:
    """Progress reported to the caller.

    kind: ``synth`` (done/total source images), ``synth_wait`` (a non-chief worker waits for
    the chief's dataset, info: path), ``start`` (info: replicas, steps, examples,
    input PSNR/SSIM of the validation pairs, resumed epoch), ``step`` (epoch, step/steps, loss),
    ``validate`` (epoch), ``epoch`` (record, improved).
    """

    kind: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    done: int = 0
    total: int = 0
    record: EpochRecord | None = None
    improved: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`."""

    run_dir: str
    epochs_done: int
    epochs: int
    best_epoch: int
    best_val_psnr: float
    best_val_ssim: float
    input_val_psnr: float
    input_val_ssim: float
    weights: str
    resumed_from: int
    seconds: float
    notes: tuple[str, ...] = ()
    value_space: str = ""


Progress = Callable[[TrainEvent], None]


# --------------------------------------------------------------------------- data


def data_sources(recipe: Recipe, run_dir: str) -> tuple[tuple[DatasetRef, ...], str, str]:
    """Training sources and the validation (path, split) of a recipe (``RUN/data`` for a
    recipe with a ``[synth]`` table)."""
    data = recipe.data
    if recipe.synth is None:
        return data.datasets, data.val_path or data.datasets[0].path, data.val_split
    out = storage.join(run_dir, DATA_DIR)
    return (DatasetRef(out, "train"),), data.val_path or out, data.val_split


def synthesize_recipe_data(recipe: Recipe, run_dir: str, progress: Progress | None = None) -> None:
    """Writes the ``[synth]`` dataset into ``RUN/data`` (resumed if killed, a no-op when done)."""
    from lpie_data.jobs import JobOptions
    from lpie_data.synth import synthesize

    def report(done: int, total: int) -> None:
        if progress:
            progress(TrainEvent("synth", done=done, total=total))

    data = recipe.data
    if recipe.synth is None:
        return
    synthesize(
        storage.join(run_dir, DATA_DIR), sources=list(data.synth_sources),
        psfs=list(data.synth_psfs), config=recipe.synth, seed=data.synth_seed,
        val_fraction=data.synth_val_fraction, job=JobOptions(progress=report),
    )


@dataclass(frozen=True)
class ValueSpaces:
    """The value space of a run's data (``data``) and the one the model trains in (``model``);
    ``notes`` say what was assumed for datasets whose manifest records none."""

    data: str
    model: str
    notes: tuple[str, ...] = ()

    @property
    def mapping(self) -> tuple[str, str] | None:
        """(data, model) for the input pipeline, None when no mapping is needed."""
        return None if self.data == self.model else (self.data, self.model)


def value_spaces(recipe: Recipe, sources: tuple[DatasetRef, ...], val_path: str) -> ValueSpaces:
    """Reads the value space of every dataset of the run and decides the model's.

    With a ``[synth]`` table the space follows from its ``tone_map`` (known before synthesis).
    Raises DataError for datasets in different spaces (naming each with its space) and
    ConfigError for data whose values exceed the model's output range (linear HDR) when
    ``[data] value_space`` does not map them into a bounded space.
    """
    from lpie_data.valuespace import TONE_MAP_SPACES, is_bounded, value_space_of

    notes: list[str] = []
    if recipe.synth is not None:
        found = {"[synth]": TONE_MAP_SPACES[recipe.synth.tone_map]}
        if recipe.data.val_path:
            found[val_path] = value_space_of(val_path)[0]
    else:
        found = {}
        for path in dict.fromkeys([*(s.path for s in sources), val_path]):
            space, assumed = value_space_of(path)
            found[path] = space
            if assumed:
                notes.append(f"{path}: manifest.json records no value space; assumed {space!r} "
                             "from the command that made it")
    spaces = sorted(set(found.values()))
    if len(spaces) > 1:
        listed = ", ".join(f"{p} ({s})" for p, s in found.items())
        raise DataError(
            f"the datasets of this run are in different value spaces: {listed}; train on "
            "datasets of one space (re-make the others, e.g. with the same tone map)"
        )
    data_space = spaces[0]
    model_space = recipe.data.value_space or data_space
    if not is_bounded(model_space):
        raise ConfigError(
            f"{', '.join(found)}: the data are in the {data_space!r} value space (values may "
            "exceed 1), but LPIENet's output is clipped to [0, 1), so it could not learn them "
            "and PSNR with peak 1 would mean nothing; set [data] value_space = \"reinhard\" "
            "(or \"srgb\") in the recipe to map them on the fly"
        )
    return ValueSpaces(data_space, model_space, tuple(notes))


def wait_for_dataset(path: str, timeout: float, progress: Progress | None = None,
                     poll: float = 0.5) -> None:
    """Waits until the dataset at ``path`` is finished (its ``manifest.json`` exists): what the
    other workers of a multi-worker run do while the chief synthesises. DataError after
    ``timeout`` seconds, naming the file waited for."""
    from lpie_data.shards import MANIFEST

    manifest = storage.join(path, MANIFEST)
    deadline = time.monotonic() + timeout
    if progress:
        progress(TrainEvent("synth_wait", info={"path": manifest}))
    while not storage.exists(manifest):
        if time.monotonic() > deadline:
            raise DataError(
                f"waited {timeout:g} s (train.join_timeout) for the chief's [synth] dataset: "
                f"{manifest} did not appear; is the chief running with the same --out, on "
                "storage this worker sees?"
            )
        time.sleep(poll)


def _check_data(
    recipe: Recipe, sources: tuple[DatasetRef, ...], val_path: str, val_split: str
) -> list[SplitInfo]:
    """Every training source and the validation split exist, have examples and fit the crops."""
    infos = check_training_sources(sources, recipe.data.largest_crop())
    val_info = inspect_split(val_path, val_split)
    val_side = min(val_info.height, val_info.width, recipe.data.val_crop or math.inf)
    if val_side < 11:
        raise DataError(f"{val_path}: validation images of {val_info.height}x{val_info.width} "
                        f"are too small for SSIM (need 11x11)")
    return infos


# --------------------------------------------------------------------------- training


def _seed_everything(seed: int, deterministic: bool) -> None:
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
            self.model = build_lpienet(**recipe.model.build_kwargs())
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
        if not chief:  # other workers must save too (collectives), but somewhere private
            ckpt_dir = tempfile.mkdtemp(prefix="lpie-worker-ckpt-")
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


def _input_baseline(val_ds: Any) -> tuple[float, float, int]:
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


def _validate(trainer: Trainer, val_ds: Any) -> tuple[float, float]:
    """Mean validation PSNR and SSIM over all pairs (each at its own size)."""
    psnr, ssim, n = 0.0, 0.0, 0.0
    for x, y in val_ds.batch(1):
        p, s, c = trainer.eval_step(x, y)
        psnr, ssim, n = psnr + float(p), ssim + float(s), n + float(c)
    if n == 0:
        raise DataError("validation produced no pairs")
    return psnr / n, ssim / n


def _log_images(trainer: Trainer, images: list[tuple[Any, Any]], epoch: int) -> None:
    """input | output | target strips of a few validation pairs, into the current writer."""
    import tensorflow as tf

    from lpie_model.data import centre_crop

    for i, (x, y) in enumerate(images):
        x, y = centre_crop(x, TB_IMAGE_SIDE), centre_crop(y, TB_IMAGE_SIDE)
        out = trainer.predict_local(x[None])[0]
        strip = tf.clip_by_value(tf.concat([x, out, y], axis=1), 0.0, 1.0)
        tf.summary.image(f"input_output_target/{i}", strip[None], step=epoch)


def train(
    recipe: Recipe,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
) -> TrainResult:
    """Trains LPIENet as ``recipe`` says into ``run_dir`` (see the module doc for the layout).

    With ``resume`` continues the run in ``run_dir`` from its last finished epoch (weights,
    optimiser state, learning rate, plateau counters, best PSNR), or finishes its synthesis.
    Every input is checked before the first step. The writing process holds the run folder's
    lock (:func:`lpie_data.jobs.output_lock`) while it trains: a second run into the same folder
    fails at once. Raises ConfigError, DataError, OutputError.
    """
    with contextlib.ExitStack() as lock:
        return _train(recipe, run_dir, resume=resume, progress=progress, lock=lock)


def _train(recipe: Recipe, run_dir: str | Path, *, resume: bool, progress: Progress | None,
           lock: contextlib.ExitStack) -> TrainResult:
    """The body of :func:`train`; takes the run folder's lock into ``lock`` once it exists."""
    t0 = time.perf_counter()
    run_dir = str(run_dir)
    progress = progress or (lambda event: None)
    recipe = resolve_paths(recipe)
    data, tr = recipe.data, recipe.train
    # Under multiworker only the chief writes; the others find its files in the shared RUN.
    writer = writes_run_dir(recipe)
    if writer or resume:
        check_run_dir(recipe, run_dir, resume)
    sources, val_path, val_split = data_sources(recipe, run_dir)
    if recipe.synth is None:  # given datasets are checked before anything is written
        infos = _check_data(recipe, sources, val_path, val_split)
    spaces = value_spaces(recipe, sources, val_path)  # before anything is written too
    if writer:
        try:
            storage.makedirs(run_dir)
        except OSError as e:
            raise OutputError(f"{run_dir}: cannot create the run folder ({e.strerror})") from None
        lock.enter_context(output_lock(run_dir, "lpie-model train"))
        write_json(storage.join(run_dir, RECIPE_FILE), recipe.to_dict())
    if recipe.synth is not None:
        if writer:
            synthesize_recipe_data(recipe, run_dir, progress)
        else:
            wait_for_dataset(storage.join(run_dir, DATA_DIR), tr.join_timeout, progress)
        infos = _check_data(recipe, sources, val_path, val_split)

    _seed_everything(tr.seed, tr.deterministic)
    strategy = STRATEGIES[tr.strategy](recipe)
    replicas = strategy.num_replicas_in_sync
    if data.batch_size % replicas:
        raise ConfigError(
            f"data.batch_size: the global batch {data.batch_size} does not split evenly over "
            f"{replicas} replicas of strategy {tr.strategy!r}"
        )
    chief = is_chief(strategy)
    examples = sum(i.examples for i in infos)
    steps = tr.steps_per_epoch or max(1, examples // data.batch_size)

    import tensorflow as tf

    trainer = Trainer(recipe, strategy, run_dir, chief)
    resumed_from, notes = _restore(trainer, run_dir) if resume else (0, [])
    if chief:
        write_model_json(run_dir, recipe, spaces.model)
    metrics_path = storage.join(run_dir, METRICS_FILE)
    rows = read_metrics(metrics_path, resumed_from) if chief else []

    val_ds = validation_dataset(val_path, val_split, crop=data.val_crop,
                                max_examples=data.val_max_examples, spaces=spaces.mapping)
    datasets = [(src.path, src.split) for src in sources] + [(val_path, val_split)]
    try:
        input_psnr, input_ssim, val_pairs = _input_baseline(val_ds)
    except tf.errors.DataLossError as e:
        raise _data_loss(e, datasets) from None
    tb_images = list(val_ds.take(tr.tensorboard_images)) if tr.tensorboard_images else []
    if chief:
        writers = {name: tf.summary.create_file_writer(storage.join(run_dir, LOG_DIR, name))
                   for name in ("train", "validation")}
    else:
        writers = {name: tf.summary.create_noop_writer() for name in ("train", "validation")}
    progress(TrainEvent("start", epoch=resumed_from, epochs=tr.epochs, steps=steps, info={
        "replicas": replicas, "examples": examples, "resumed_from": resumed_from,
        "input_val_psnr": input_psnr, "input_val_ssim": input_ssim,
        "val_pairs": val_pairs, "chief": chief, "value_space": spaces.model,
        "data_value_space": spaces.data, "notes": notes,
    }))

    try:
        for epoch in range(resumed_from + 1, tr.epochs + 1):
            e0 = time.perf_counter()
            crop = data.crop_for_epoch(epoch)
            lr = trainer.lr
            ds = training_dataset(
                sources, crop=crop, batch_size=data.batch_size, seed=tr.seed, epoch=epoch,
                steps=steps, flips=data.flips, rotations=data.rotations,
                shuffle_buffer=data.shuffle_buffer, spaces=spaces.mapping,
            )
            total = 0.0
            with writers["train"].as_default():
                iterator = iter(strategy.experimental_distribute_dataset(ds))
                for step in range(1, steps + 1):
                    loss = float(trainer.train_step(iterator))
                    if not math.isfinite(loss):
                        raise DataError(f"epoch {epoch}, step {step}: the loss became {loss}; "
                                        "lower train.lr or check the data's value range")
                    total += loss
                    if step % tr.log_every == 0:
                        tf.summary.scalar("loss", loss, step=(epoch - 1) * steps + step)
                    progress(TrainEvent("step", epoch=epoch, epochs=tr.epochs, step=step,
                                        steps=steps, loss=total / step))
                tf.summary.scalar("epoch_loss", total / steps, step=epoch)
                tf.summary.scalar("learning_rate", lr, step=epoch)
                tf.summary.scalar("crop", crop[0], step=epoch)
            progress(TrainEvent("validate", epoch=epoch, epochs=tr.epochs))
            psnr, ssim = _validate(trainer, val_ds)

            improved = psnr > float(trainer.value("best_psnr"))
            if improved:
                trainer.state["best_psnr"].assign(psnr)
                trainer.state["best_ssim"].assign(ssim)
                trainer.state["best_epoch"].assign(epoch)
                if chief:
                    tmp = storage.join(run_dir, ".best.tmp.weights.h5")
                    trainer.model.save_weights(tmp)
                    storage.rename(tmp, storage.join(run_dir, WEIGHTS_FILE))
            _plateau(trainer, psnr, tr)

            with writers["validation"].as_default():
                tf.summary.scalar("psnr", psnr, step=epoch)
                tf.summary.scalar("ssim", ssim, step=epoch)
                tf.summary.scalar("input_psnr", input_psnr, step=epoch)
                _log_images(trainer, tb_images, epoch)
            for w in writers.values():
                w.flush()

            record = EpochRecord(
                epoch=epoch, crop=f"{crop[0]}x{crop[1]}", lr=lr, train_loss=total / steps,
                val_psnr=psnr, val_ssim=ssim, best_val_psnr=float(trainer.value("best_psnr")),
                seconds=time.perf_counter() - e0,
            )
            if chief:
                rows.append(record.row())
                write_metrics(metrics_path, rows)
            # The checkpoint marks the epoch finished; a kill before it redoes the epoch, and
            # resume drops its metrics row (epochs after the checkpoint's are not kept).
            trainer.state["epoch"].assign(epoch)
            trainer.manager.save(checkpoint_number=epoch)
            if chief:
                _write_summary(run_dir, trainer, recipe, epoch, input_psnr, input_ssim)
            progress(TrainEvent("epoch", epoch=epoch, epochs=tr.epochs, steps=steps,
                                record=record, improved=improved))
    except tf.errors.InvalidArgumentError as e:
        if "smaller than the" not in e.message:
            raise
        paths = ", ".join(src.path for src in sources)
        raise DataError(
            f"{paths}: a training image is smaller than the {crop[0]}x{crop[1]} crop of epoch "
            f"{epoch} (only the first pair's size is checked before training); use smaller crops"
        ) from None
    except (tf.errors.UnavailableError, tf.errors.CancelledError) as e:
        if tr.strategy != "multiworker":
            raise
        first = (e.message or str(e)).strip().splitlines()[0]
        raise DataError(
            f"epoch {epoch}: another worker of the cluster stopped ({first}); start every "
            "worker again with the same command and --resume"
        ) from None
    except tf.errors.DataLossError as e:
        raise _data_loss(e, datasets) from None
    except tf.errors.UnimplementedError as e:
        if "determinis" not in str(e).lower():
            raise
        raise ConfigError(
            f"an operation has no deterministic implementation on this device ({e.message}); "
            "set [train] deterministic = false (resume is then exact only up to rounding)"
        ) from None
    finally:
        for w in writers.values():
            w.close()

    epochs_done = int(trainer.value("epoch"))
    if chief:
        _write_summary(run_dir, trainer, recipe, epochs_done, input_psnr, input_ssim)
    return TrainResult(
        run_dir=run_dir, epochs_done=epochs_done, epochs=tr.epochs,
        best_epoch=int(trainer.value("best_epoch")),
        best_val_psnr=float(trainer.value("best_psnr")),
        best_val_ssim=float(trainer.value("best_ssim")),
        input_val_psnr=input_psnr, input_val_ssim=input_ssim,
        weights=storage.join(run_dir, WEIGHTS_FILE), resumed_from=resumed_from,
        seconds=time.perf_counter() - t0, notes=spaces.notes, value_space=spaces.model,
    )


def _data_loss(e: Any, datasets: list[tuple[str, str]]) -> DataError:
    """A DataError naming the damaged shard behind TensorFlow's DataLossError ``e``."""
    text = getattr(e, "message", "") or str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    message = next((ln for ln in lines if "corrupt" in ln or "truncated" in ln.lower()),
                   lines[0] if lines else "DataLossError")
    shard = damaged_shard(datasets, message)
    if shard is not None:
        return DataError(f"{shard}: damaged record ({message}); the dataset needs rebuilding "
                         "(lpie-data inspect --verify checks a whole dataset)")
    paths = ", ".join(dict.fromkeys(p for p, _ in datasets))
    return DataError(f"{paths}: damaged TFRecord data ({message}); run lpie-data inspect "
                     "--verify on each dataset to find the shard")


def _restore(trainer: Trainer, run_dir: str) -> tuple[int, list[str]]:
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


def _plateau(trainer: Trainer, psnr: float, tr: Any) -> None:
    s = trainer.state
    new = plateau_step(
        PlateauState(float(s["plateau_best"].numpy()), int(s["plateau_wait"].numpy()), trainer.lr),
        psnr, tr,
    )
    s["plateau_best"].assign(new.best)
    s["plateau_wait"].assign(new.wait)
    if new.lr != trainer.lr:
        trainer.set_lr(new.lr)


def _write_summary(run_dir: str, trainer: Trainer, recipe: Recipe, epochs_done: int,
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
        "model": MODEL_FILE,
    })
