"""A TFDS feature for lpie datasets whose images differ in width: imported by
tensorflow-datasets itself (``features.json`` names this module), never by lpie.

The records store each image as flat raw bytes beside ``height`` and ``width``; TFDS's own
``Tensor`` feature can restore only shapes with one unknown dimension, so this FeaturesDict
decodes the flat arrays and reshapes ``input`` and ``target`` to ``(height, width, 3)``.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

IMAGES = ("input", "target")


class LpiePairFeatures(tfds.features.FeaturesDict):
    """The features of an lpie record, with images of any size restored to H x W x 3."""

    def get_tensor_info(self) -> dict[str, Any]:
        info = dict(super().get_tensor_info())
        for name in IMAGES:
            flat = info[name]
            info[name] = tfds.features.TensorInfo(shape=(None, None, 3), dtype=flat.dtype)
        return info

    def decode_example(self, serialized_example: Any, *, decoders: Any = None) -> Any:
        example = dict(super().decode_example(serialized_example, decoders=decoders))
        shape = tf.stack([tf.cast(example["height"], tf.int32),
                          tf.cast(example["width"], tf.int32), 3])
        for name in IMAGES:
            example[name] = tf.reshape(example[name], shape)
        return example

    def decode_example_np(self, serialized_example: Any, *, decoders: Any = None) -> Any:
        example = dict(super().decode_example_np(serialized_example, decoders=decoders))
        for name in IMAGES:
            example[name] = example[name].reshape(int(example["height"]),
                                                  int(example["width"]), 3)
        return example
