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
import time
from pathlib import Path

from lpie_data import storage
from lpie_data.errors import ConfigError, DataError, OutputError
from lpie_data.jobs import output_lock
from lpie_data.jsonfile import write_json
from lpie_model.checkpoint import WEIGHTS_FILE, write_config
from lpie_model.data import (
    training_dataset,
    validation_dataset,
)
from lpie_model.recipe import Recipe
from lpie_model.rundir import (
    DATA_DIR,
    LOG_DIR,
    METRICS_FILE,
    RECIPE_FILE,
    check_run_dir,
    read_metrics,
    resolve_paths,
    write_metrics,
)
from lpie_model.strategies import STRATEGIES, is_chief, writes_run_dir
from lpie_model.train_data import (
    check_data,
    data_loss,
    data_sources,
    synthesize_recipe_data,
    value_spaces,
    wait_for_dataset,
)
from lpie_model.train_events import EpochRecord, Progress, TrainEvent, TrainResult
from lpie_model.trainer import (
    Trainer,
    input_baseline,
    log_images,
    plateau,
    restore,
    seed_everything,
    validate,
    write_summary,
)


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
        infos = check_data(recipe, sources, val_path, val_split)
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
        infos = check_data(recipe, sources, val_path, val_split)

    seed_everything(tr.seed, tr.deterministic)
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
    resumed_from, notes = restore(trainer, run_dir) if resume else (0, [])
    if chief:
        write_config(run_dir, recipe.model, spaces.model)
    metrics_path = storage.join(run_dir, METRICS_FILE)
    rows = read_metrics(metrics_path, resumed_from) if chief else []

    val_ds = validation_dataset(val_path, val_split, crop=data.val_crop,
                                max_examples=data.val_max_examples, spaces=spaces.mapping)
    datasets = [(src.path, src.split) for src in sources] + [(val_path, val_split)]
    try:
        input_psnr, input_ssim, val_pairs = input_baseline(val_ds)
    except tf.errors.DataLossError as e:
        raise data_loss(e, datasets) from None
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
            psnr, ssim = validate(trainer, val_ds)

            improved = psnr > float(trainer.value("best_psnr"))
            if improved:
                trainer.state["best_psnr"].assign(psnr)
                trainer.state["best_ssim"].assign(ssim)
                trainer.state["best_epoch"].assign(epoch)
                if chief:
                    tmp = storage.join(run_dir, ".best.tmp.weights.h5")
                    trainer.model.save_weights(tmp)
                    storage.rename(tmp, storage.join(run_dir, WEIGHTS_FILE))
            plateau(trainer, psnr, tr)

            with writers["validation"].as_default():
                tf.summary.scalar("psnr", psnr, step=epoch)
                tf.summary.scalar("ssim", ssim, step=epoch)
                tf.summary.scalar("input_psnr", input_psnr, step=epoch)
                log_images(trainer, tb_images, epoch)
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
                write_summary(run_dir, trainer, recipe, epoch, input_psnr, input_ssim)
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
        raise data_loss(e, datasets) from None
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
        trainer.close()

    epochs_done = int(trainer.value("epoch"))
    if chief:
        write_summary(run_dir, trainer, recipe, epochs_done, input_psnr, input_ssim)
    return TrainResult(
        run_dir=run_dir, epochs_done=epochs_done, epochs=tr.epochs,
        best_epoch=int(trainer.value("best_epoch")),
        best_val_psnr=float(trainer.value("best_psnr")),
        best_val_ssim=float(trainer.value("best_ssim")),
        input_val_psnr=input_psnr, input_val_ssim=input_ssim,
        weights=storage.join(run_dir, WEIGHTS_FILE), resumed_from=resumed_from,
        seconds=time.perf_counter() - t0, notes=spaces.notes, value_space=spaces.model,
    )
