"""A trained network on disk: ``model.json`` (the one writer and reader) and loading weights.

A run folder holds ``model.json`` (the `ModelConfig` options it was built with and the value space
it works in, see `lpie_data.valuespace`) next to ``best.weights.h5``. `load_model` also takes a
bare ``.weights.h5`` (with its architecture) or a full ``.keras`` file. TensorFlow is imported only
when a model is loaded, so run folders can be checked and written without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lpie_data import storage
from lpie_data.errors import ConfigError, DataError
from lpie_data.jsonfile import write_json
from lpie_data.valuespace import check_space
from lpie_model.config import ModelConfig
from lpie_model.errors import ModelConfigError

if TYPE_CHECKING:
    import keras

WEIGHTS_FILE = "best.weights.h5"
CONFIG_FILE = "model.json"


def model_config(data: Mapping[str, Any], where: str = "model config") -> ModelConfig:
    """`ModelConfig.from_dict`, its errors as `ConfigError`s naming `where`."""
    try:
        return ModelConfig.from_dict(data)
    except ModelConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: bad value ({e})") from None


def write_config(
    run_dir: str | Path, build: ModelConfig | Mapping[str, Any], value_space: str | None = None
) -> str:
    """Writes ``run_dir/model.json`` (the one writer of that file); returns its path.

    ``build``: a `ModelConfig`, or a mapping of its options (validated; only the given ones are
    written). ``value_space``: the space of the model's input and output values
    (`lpie_data.valuespace`), or None for "not recorded". Raises ConfigError for bad values.
    """
    if isinstance(build, ModelConfig):
        data = build.build_kwargs()
    else:
        given = dict(build)
        data = {k: v for k, v in model_config(given, "model").build_kwargs().items() if k in given}
    if value_space is not None:
        data["value_space"] = check_space(value_space)
    path = storage.join(str(run_dir), CONFIG_FILE)
    write_json(path, data)
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    """The JSON object of a `model.json` (build options, optional "value_space"), unvalidated."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a JSON object of build options")
    return config


def architecture(text: str) -> dict[str, Any]:
    """The build options `--arch` gives bare weights: a `model.json` file's path, or its JSON
    object itself (e.g. '{"variant": "base", "activation": "elu"}'); ConfigError otherwise."""
    if Path(text).is_file():
        return read_config(text)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--arch: neither a file nor a JSON object of build options ({e})"
                          ) from None
    if not isinstance(config, dict):
        raise ConfigError(f"--arch: expected a JSON object of build options, got {text!r}")
    return config


def load_model(path: str | Path, build: Mapping[str, Any] | None = None) -> keras.Model:
    """Loads a trained LPIENet for inference.

    Accepted `path`s:
        - a run directory holding `model.json` (build options and value space, e.g.
          {"variant": "base", "value_space": "srgb"}) and `best.weights.h5`;
        - a `.weights.h5` file, built with the `model.json` next to it;
        - a `.keras` file (full saved model).

    `build`: the architecture (build options, as in `model.json`) of a `.weights.h5` that has no
    `model.json` next to it. Without either, loading is refused: weights of a ReLU or
    `irb_second_input="y"` network have the same shapes as the defaults' and would load silently
    into the wrong network. With both, or for a `.keras` file, it is refused too (the file's own
    architecture would be overridden).

    Returns:
        The dynamic-size model; its build options are attached as `model.lpie_config` and the
        value space it was trained in (from `model.json`; None when not recorded) as
        `model.lpie_value_space`.

    Raises:
        DataError: missing or unreadable files, weights without their architecture.
        ConfigError: a bad `model.json`.
    """
    path = Path(path)
    if path.is_dir():
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise DataError(f"{path}: not a training run directory (no {WEIGHTS_FILE})")
        config_path = path / CONFIG_FILE
    elif path.name.endswith(".weights.h5"):
        weights = path
        config_path = path.parent / CONFIG_FILE
    elif path.suffix == ".keras":
        if build is not None:
            raise DataError(f"{path}: a .keras file holds its architecture; leave --arch out")
        return _load_keras_file(path)
    else:
        raise DataError(f"{path}: expected a run directory, a .weights.h5 file or a .keras file")
    if not weights.is_file():
        raise DataError(f"{weights}: no such file")
    if build is not None and config_path.is_file():
        raise DataError(f"{weights}: {config_path} gives these weights their architecture; "
                        "leave --arch out (it is for weights without a model.json)")
    if build is not None:
        config, where = dict(build), "--arch"
    elif config_path.is_file():
        config, where = read_config(config_path), str(config_path)
    else:
        raise DataError(
            f"{weights}: no {CONFIG_FILE} next to these weights, so their architecture is unknown "
            f"(ReLU or irb_second_input 'y' weights fit the default network too); put the run's "
            f'{CONFIG_FILE} next to them or give it with --arch, e.g. --arch '
            f"'{{\"variant\": \"base\", \"activation\": \"elu\"}}'"
        )
    value_space = config.pop("value_space", None)
    if value_space is not None:
        try:
            check_space(str(value_space))
        except ConfigError as e:
            raise ConfigError(f"{where}: value_space: {e}") from None
    from lpie_model.lpienet import build_lpienet

    options = model_config(config, where)
    model = build_lpienet(options)
    try:
        model.load_weights(weights)
    except Exception as e:  # h5py / keras mismatch errors come in several types
        raise DataError(f"{weights}: weights do not fit {options.resolved()} ({e})") from None
    model.lpie_value_space = value_space
    return model


def _load_keras_file(path: Path) -> keras.Model:
    """A full `.keras` model, its build options recovered from its layers."""
    import keras

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        model = keras.models.load_model(path)
    except Exception as e:  # keras raises many types for unreadable files
        raise DataError(f"{path}: cannot load Keras model ({e})") from None
    model.lpie_config = config_of_keras_model(model).resolved()
    model.lpie_value_space = None
    return model


def config_of_keras_model(model: keras.Model) -> ModelConfig:
    """Build options recovered from a built model's layers (widths from the stage convs; the
    IRB's second input from the layer graph in `model.get_config()`)."""
    names = {layer.name: layer for layer in model.layers}
    widths = []
    for prefix in ("enc", "dec"):
        i = 1
        while f"{prefix}{i}_conv" in names:
            widths.append(names[f"{prefix}{i}_conv"].filters)
            i += 1
    options: dict[str, Any] = {"widths": tuple(widths) or None}
    if "enc1_irb1_act1" in names:
        options["activation"] = names["enc1_irb1_act1"].get_config()["activation"]
    if "enc1_irb1_dw" in names:
        options["dw_kernel"] = names["enc1_irb1_dw"].kernel_size[0]
    layers = {layer["name"]: layer for layer in model.get_config()["layers"]}
    if "enc1_irb1_pw3" in layers:
        sources = set(_history_names(layers["enc1_irb1_pw3"].get("inbound_nodes", [])))
        options["irb_second_input"] = "y" if "enc1_irb1_add1" in sources else "m"
    return ModelConfig(**options)


def _history_names(node: Any) -> Iterator[str]:
    """Names of the layers a serialized inbound node (nested lists and dicts) refers to."""
    if isinstance(node, dict):
        history = node.get("keras_history")
        if isinstance(history, list | tuple) and history:
            yield str(history[0])
        for value in node.values():
            yield from _history_names(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _history_names(value)
