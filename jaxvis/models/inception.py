"""Keras's InceptionV3 (``keras.applications.InceptionV3(include_top=False)``) as a Flax module, and its
Keras 'tf' preprocessing (``x / 127.5 - 1``, in [-1, 1]).

Keras names InceptionV3's convolutions itself, in the order its source builds them: ``conv2d``,
``conv2d_1`` ... ``conv2d_93`` with ``batch_normalization`` ... ``batch_normalization_93`` (those of a
fresh Keras session; the official file says ``conv2d_1`` ... ``conv2d_94``, and is loaded by order
anyway). The params keep these names; the activations returned are the blocks ``mixed0`` ... ``mixed10``.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvis.models.keras_layers import BatchNorm, Emitter, avg_pool_3x3_same, conv, max_pool_3x3

NAMES = tuple(f'mixed{i}' for i in range(11))


def _suffix(k: int) -> str:
    return '' if k == 0 else f'_{k}'


class _Units:
    """Keras's ``conv2d_bn``: Conv2D (no bias) + BatchNorm (no scale, epsilon 1e-3) + ReLU, numbered."""

    def __init__(self):
        self.k = 0

    def __call__(self, x, filters, kh, kw, strides=1, padding='SAME'):
        s = _suffix(self.k)
        self.k += 1
        x = conv(filters, (kh, kw), strides=strides, padding=padding, bias=False, name=f'conv2d{s}')(x)
        return nn.relu(BatchNorm(1e-3, scale=False, name=f'batch_normalization{s}')(x))


def _block_a(cb, x, pool_features):
    b1 = cb(x, 64, 1, 1)
    b5 = cb(cb(x, 48, 1, 1), 64, 5, 5)
    b3 = cb(cb(cb(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
    bp = cb(avg_pool_3x3_same(x), pool_features, 1, 1)
    return [b1, b5, b3, bp]


def _block_b(cb, x):
    b3 = cb(x, 384, 3, 3, strides=2, padding='VALID')
    bd = cb(cb(cb(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, strides=2, padding='VALID')
    return [b3, bd, max_pool_3x3(x)]


def _block_c(cb, x, c7):
    b1 = cb(x, 192, 1, 1)
    b7 = cb(cb(cb(x, c7, 1, 1), c7, 1, 7), 192, 7, 1)
    bd = cb(x, c7, 1, 1)
    for filters, kh, kw in ((c7, 7, 1), (c7, 1, 7), (c7, 7, 1), (192, 1, 7)):
        bd = cb(bd, filters, kh, kw)
    bp = cb(avg_pool_3x3_same(x), 192, 1, 1)
    return [b1, b7, bd, bp]


def _block_d(cb, x):
    b3 = cb(cb(x, 192, 1, 1), 320, 3, 3, strides=2, padding='VALID')
    b7 = cb(cb(cb(cb(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, strides=2, padding='VALID')
    return [b3, b7, max_pool_3x3(x)]


def _block_e(cb, x):
    b1 = cb(x, 320, 1, 1)
    b3 = cb(x, 384, 1, 1)
    b3 = jnp.concatenate([cb(b3, 384, 1, 3), cb(b3, 384, 3, 1)], axis=-1)
    bd = cb(cb(x, 448, 1, 1), 384, 3, 3)
    bd = jnp.concatenate([cb(bd, 384, 1, 3), cb(bd, 384, 3, 1)], axis=-1)
    bp = cb(avg_pool_3x3_same(x), 192, 1, 1)
    return [b1, b3, bd, bp]


# mixed0 ... mixed10, in order: (block, extra argument)
BLOCKS = ((_block_a, 32), (_block_a, 64), (_block_a, 64), (_block_b, None), (_block_c, 128), (_block_c, 160),
          (_block_c, 160), (_block_c, 192), (_block_d, None), (_block_e, None), (_block_e, None))


class InceptionV3(nn.Module):
    """InceptionV3 feature extractor, BatchNorm in inference mode.

    ``__call__(x)``: x ``[N, H, W, 3]`` 'tf'-preprocessed (in [-1, 1]), float32 or bfloat16, H, W >= 75.
    Returns ``{'mixed0': [N, H', W', 256], ...}`` up to and including ``last_layer`` (default
    ``mixed10``, ``[N, ~H/32, ~W/32, 2048]``).
    """

    last_layer: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        cb, emit = _Units(), Emitter(self.last_layer, NAMES)
        x = cb(x, 32, 3, 3, strides=2, padding='VALID')
        x = cb(x, 32, 3, 3, padding='VALID')
        x = max_pool_3x3(cb(x, 64, 3, 3))
        x = cb(x, 80, 1, 1, padding='VALID')
        x = max_pool_3x3(cb(x, 192, 3, 3, padding='VALID'))
        for name, (block, arg) in zip(NAMES, BLOCKS):
            x = jnp.concatenate(block(cb, x) if arg is None else block(cb, x, arg), axis=-1)
            if emit(name, x):
                break
        return emit.out
