"""The `lpie-model` command: thin Typer commands over the lpie_model library.

This module is the app and ``train``; ``evaluate`` and ``enhance`` live in `cli_apply`, ``export``
and ``benchmark`` in `cli_deploy`, what they share in `cli_options`.

Heavy imports (TensorFlow) happen inside the commands so that `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lpie_data.console import (
    LpieGroup,
    console,
    interrupted,
    progress_bar,
    quiet_tensorflow,
)
from lpie_model.cli_apply import enhance_cmd, evaluate_cmd
from lpie_model.cli_deploy import benchmark_cmd, export_cmd
from lpie_model.cli_options import handle_errors

app = typer.Typer(
    cls=LpieGroup,
    name="lpie-model",
    help="Train, evaluate, export and benchmark LPIENet image restoration models.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", help="Show TensorFlow's own logging.")]
    = False,
) -> None:
    quiet_tensorflow(verbose)


app.command("evaluate")(evaluate_cmd)
app.command("enhance")(enhance_cmd)


@app.command("train")
@handle_errors
def train_cmd(
    recipe: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Training recipe (TOML).")
    ],
    out: Annotated[
        str | None,
        typer.Option("--out", help="Run folder, local or gs:// (default: runs/<recipe name>)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")
    ] = False,
) -> None:
    """Train LPIENet as RECIPE says: per-epoch validation, checkpoints, best model, TensorBoard.

    The run folder gets best.weights.h5 + model.json (the best epoch by validation PSNR),
    metrics.csv, logs/ (TensorBoard) and checkpoints/. A recipe with a "synth" table first
    synthesises its dataset into RUN/data. A new run needs an empty or missing --out.

    Example: lpie-model train recipes/smoke.toml --out runs/smoke
    """
    quiet_tensorflow()
    from lpie_model.recipe import load_recipe
    from lpie_model.train import TrainEvent, train

    spec = load_recipe(recipe)
    run_dir = out or str(Path("runs") / recipe.stem)

    def say(text: str) -> None:
        console.print(text, soft_wrap=True, highlight=False)

    def report(e: TrainEvent) -> None:
        if e.kind == "synth_wait":
            update(description="waiting for the chief's dataset")
            say(f"waiting for the chief to write {e.info['path']}")
        elif e.kind == "synth":
            update(e.done, e.total, description="synthesising data")
        elif e.kind == "start":
            i = e.info
            for note in i.get("notes", ()):
                say(f"note: {note}")
            start = f"resuming after epoch {e.epoch}" if e.epoch else "training"
            say(f"{start}: {e.epochs} epochs x {e.steps} steps, {i['replicas']} replica(s)")
            say(f"validation: {i['val_pairs']} pairs; degraded inputs {i['input_val_psnr']:.2f} "
                f"dB PSNR, {i['input_val_ssim']:.4f} SSIM")
            mapped = (f" (mapped from {i['data_value_space']})"
                      if i["data_value_space"] != i["value_space"] else "")
            say(f"value space: {i['value_space']}{mapped}")
        elif e.kind == "step":
            update(e.step, e.steps, description=f"epoch {e.epoch}/{e.epochs}",
                   note=f"loss {e.loss:.4f}")
        elif e.kind == "validate":
            update(note="validating")
        elif e.kind == "epoch" and e.record is not None:
            r = e.record
            best = "  [green]best[/]" if e.improved else ""
            say(f"epoch {r.epoch}/{e.epochs}  {r.crop}  loss {r.train_loss:.4f}  "
                f"PSNR {r.val_psnr:.2f}  SSIM {r.val_ssim:.4f}  lr {r.lr:.3g}  "
                f"{r.seconds:.0f} s{best}")

    try:
        with progress_bar("preparing") as update:
            result = train(spec, run_dir, resume=resume, progress=report)
    except KeyboardInterrupt:
        raise interrupted(f"continue with: lpie-model train {recipe} --out {run_dir} --resume"
                          ) from None
    if result.epochs_done == result.resumed_from:
        say(f"[green]{run_dir} had already trained {result.epochs_done} epochs[/]")
    say(f"[green]best: epoch {result.best_epoch}, {result.best_val_psnr:.2f} dB PSNR, "
        f"{result.best_val_ssim:.4f} SSIM[/] (degraded inputs: {result.input_val_psnr:.2f} dB, "
        f"{result.input_val_ssim:.4f}) after {result.seconds / 60:.1f} min")
    for note in result.notes:
        say(f"[yellow]note:[/] {note}")
    say(f"model: {result.weights} + model.json (value space {result.value_space})")
    say(f"metrics: {run_dir}/metrics.csv  TensorBoard: tensorboard --logdir {run_dir}/logs")


app.command("export")(export_cmd)
app.command("benchmark")(benchmark_cmd)


def main() -> None:
    """Entry point of the `lpie-model` console script."""
    app()


if __name__ == "__main__":
    main()
