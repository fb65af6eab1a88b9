"""Keras layers as Keras computes them in inference, for the Keras applications (ResNet50, InceptionV3).

Params keep Keras's own names (``kernel``, ``bias``; ``gamma``, ``beta``, ``moving_mean``,
``moving_variance``), all in the 'params' collection, so a loaded file is one plain pytree. NHWC.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvis.errors import JaxvisError

BN_ROLES = ('gamma', 'beta', 'moving_mean', 'moving_variance')  # Keras's `layer.weights` order
CONV_ROLES = ('kernel', 'bias')


class BatchNorm(nn.Module):
    """Keras ``BatchNormalization`` in inference mode: ``(x - moving_mean) * gamma / sqrt(moving_variance
    + epsilon) + beta`` per channel (last axis), computed as Keras's TF backend does. ``scale=False``: no
    gamma (InceptionV3). Params ``[C]`` float32; runs in the input's dtype."""

    epsilon: float = 1e-3
    scale: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        gamma = self.param('gamma', nn.initializers.ones, (c,), jnp.float32) if self.scale else None
        beta = self.param('beta', nn.initializers.zeros, (c,), jnp.float32)
        mean = self.param('moving_mean', nn.initializers.zeros, (c,), jnp.float32)
        var = self.param('moving_variance', nn.initializers.ones, (c,), jnp.float32)
        inv = jax.lax.rsqrt(var + self.epsilon)
        if gamma is not None:
            inv = inv * gamma
        return x * inv.astype(x.dtype) + (beta - mean * inv).astype(x.dtype)


def conv(features: int, kernel: tuple[int, int], *, strides: int = 1, padding: str = 'VALID',
         bias: bool = True, name: str) -> nn.Conv:
    """Keras ``Conv2D``: padding 'VALID' or 'SAME' (XLA's SAME pads as TF does: the extra row at the end)."""
    return nn.Conv(features, kernel, strides=(strides, strides), padding=padding, use_bias=bias, name=name,
                   dtype=None, param_dtype=jnp.float32)


def max_pool_3x3(x: jax.Array) -> jax.Array:
    """Keras ``MaxPooling2D((3, 3), strides=(2, 2))``, 'valid': ``[N, H, W, C] -> [N, (H-3)//2+1, ...]``."""
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


def avg_pool_3x3_same(x: jax.Array) -> jax.Array:
    """Keras ``AveragePooling2D((3, 3), strides=(1, 1), padding='same')``: the padding is not counted."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding='SAME', count_include_pad=False)


def zero_pad(x: jax.Array, n: int) -> jax.Array:
    """Keras ``ZeroPadding2D(n)``: ``n`` zero rows and columns on every side."""
    return jnp.pad(x, ((0, 0), (n, n), (n, n), (0, 0)))


class Emitter:
    """Collects named activations in forward order and says when the deepest one asked for (``last``,
    None: the last of ``names``) is reached. Raises JaxvisError for a name not in ``names``."""

    def __init__(self, last: str | None, names: tuple[str, ...]):
        last = last or names[-1]
        if last not in names:
            raise JaxvisError(f'unknown layer {last!r}; valid layers: {", ".join(names)}')
        self.last, self.out = last, {}

    def __call__(self, name: str, x: jax.Array) -> bool:
        self.out[name] = x
        return name == self.last
