"""How RGB 0..255 maps to a model's input, and back: the usual conventions by name.

``'caffe'``: Keras's caffe mode (BGR, ImageNet BGR mean subtracted, no scaling: VGG, ResNet50);
``'tf'``: Keras's 'tf' mode, ``x / 127.5 - 1`` in [-1, 1] (InceptionV3, MobileNet);
``'torch'``: ``(x / 255 - mean) / std`` with ImageNet's RGB mean and std (torchvision);
``'unit'``: ``x / 255`` in [0, 1] (the usual for a model of one's own);
``'lite'``: ``(x - 127) / 128``, the "inception-style" mean and stddev that TensorFlow's EfficientNet-Lite
(EfficientNet-Lite0's weights) was trained with (tensorflow/tpu, models/official/efficientnet/lite/
efficientnet_lite_builder.py: ``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3``);
``'raw'``: 0..255 unchanged. Each comes with its exact inverse.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxvis.errors import JaxvisError
from jaxvis.models.vgg import deprocess as caffe_deprocess
from jaxvis.models.vgg import preprocess as caffe_preprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def _torch_pre(rgb: jax.Array) -> jax.Array:
    return (_f32(rgb) / 255.0 - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)


def _torch_de(x: jax.Array) -> jax.Array:
    return (_f32(x) * jnp.asarray(IMAGENET_STD, jnp.float32) + jnp.asarray(IMAGENET_MEAN, jnp.float32)) * 255.0


MODES: dict[str, tuple[Callable, Callable]] = {
    'caffe': (caffe_preprocess, caffe_deprocess),
    'tf': (lambda rgb: _f32(rgb) / 127.5 - 1.0, lambda x: (_f32(x) + 1.0) * 127.5),
    'torch': (_torch_pre, _torch_de),
    'unit': (lambda rgb: _f32(rgb) / 255.0, lambda x: _f32(x) * 255.0),
    'lite': (lambda rgb: (_f32(rgb) - 127.0) / 128.0, lambda x: _f32(x) * 128.0 + 127.0),
    'raw': (_f32, _f32),
}


def resolve(preprocess, deprocess=None) -> tuple[Callable, Callable]:
    """``(preprocess, deprocess)`` from a mode name, or from a callable and its inverse."""
    if isinstance(preprocess, str):
        if preprocess not in MODES:
            raise JaxvisError(f'unknown preprocessing {preprocess!r}; known: {", ".join(MODES)}')
        if deprocess is not None:
            raise JaxvisError('pass deprocess only with a preprocess function, not with a mode name')
        return MODES[preprocess]
    if not callable(preprocess) or not callable(deprocess):
        raise JaxvisError('preprocess must be a mode name or a function given with its inverse (deprocess=)')
    return preprocess, deprocess
