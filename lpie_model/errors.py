"""Exceptions of the network's own modules (layers, blocks, builder, losses, metrics).

The network knows no files and imports nothing from `lpie_data`, so it has its own small
exceptions. Both are `ValueError`s; the `lpie-model` command turns them (like `lpie_data`'s
`LpieError`s) into a message and exit status 1.
"""


class ModelError(ValueError):
    """Base of the errors the network's modules raise."""


class ModelConfigError(ModelError):
    """A bad build option or loss weight; the message names the option and its valid values."""


class ShapeError(ModelError):
    """Images or tensors whose shapes do not fit (e.g. metrics of two differently sized images)."""
