"""lpie_model: LPIENet, its losses and metrics, training, TFLite export and benchmarks.

`ModelConfig` (the architecture, plain Python), `build_lpienet` and `load_model` are imported
lazily so that `import lpie_model` (and commands that do not need TensorFlow, such as `--help`)
start without importing TensorFlow. docs/architecture.md lists the module of each capability.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lpie_model.checkpoint import load_model
    from lpie_model.lpienet import build_lpienet

__all__ = ["ModelConfig", "build_lpienet", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "build_lpienet":
        from lpie_model.lpienet import build_lpienet

        return build_lpienet
    if name == "load_model":
        from lpie_model.checkpoint import load_model

        return load_model
    if name == "ModelConfig":
        from lpie_model.config import ModelConfig

        return ModelConfig
    raise AttributeError(f"module 'lpie_model' has no attribute {name!r}")
