"""VGG16 / VGG19 as Flax modules with Keras layer names, plus Keras 'caffe' preprocessing.

The module returns a dict of named activations and computes nothing past ``last_layer``.
Weights are never loaded here: see :func:`jaxvis.models.keras_h5.load_keras_h5`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvis.models.winograd import conv3x3

# Keras `vgg16.preprocess_input` ('caffe' mode): RGB -> BGR, minus the ImageNet BGR mean, no scaling.
BGR_MEAN = (103.939, 116.779, 123.68)

VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
VGG19_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
# Same topology and layer names as VGG16, a few channels per layer: for tests only.
TINY_BLOCKS = ((2, 4), (2, 6), (3, 8), (3, 8), (3, 8))


def preprocess(rgb: jax.Array) -> jax.Array:
    """RGB in 0..255 ``[..., 3]`` -> model input (BGR, mean subtracted), same shape, float32."""
    rgb = jnp.asarray(rgb, jnp.float32)
    return rgb[..., ::-1] - jnp.asarray(BGR_MEAN, jnp.float32)


def deprocess(x: jax.Array) -> jax.Array:
    """Model input ``[..., 3]`` -> RGB in 0..255 (not clipped); the exact inverse of :func:`preprocess`."""
    x = jnp.asarray(x, jnp.float32)
    return (x + jnp.asarray(BGR_MEAN, jnp.float32))[..., ::-1]


def layer_table(blocks: Sequence[tuple[int, int]]) -> tuple[tuple[str, str, int, int], ...]:
    """Every layer in order as ``(name, kind, channels, downsample)``; kind is 'conv' or 'pool'.

    ``downsample`` is the total stride of the layer's output relative to the input.
    """
    rows = []
    for b, (n_conv, width) in enumerate(blocks, start=1):
        stride = 2 ** (b - 1)
        for c in range(1, n_conv + 1):
            rows.append((f'block{b}_conv{c}', 'conv', width, stride))
        rows.append((f'block{b}_pool', 'pool', width, stride * 2))
    return tuple(rows)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """Keras ``MaxPooling2D()``: 2x2 window, stride 2, 'valid' padding (odd sizes floor). NHWC.

    A reshape and a max over the two window axes: the same forward as ``nn.max_pool``, but its gradient
    is a cheap compare-and-select instead of XLA's select-and-scatter (the costliest op of the backward
    pass on XLA:CPU, docs/performance.md). At exact ties the gradient is shared between the tied inputs
    rather than given to the first one.
    """
    n, h, w, c = x.shape
    x = x[:, :h // 2 * 2, :w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Conv3x3(nn.Module):
    """``nn.Conv(features, (3, 3), padding='SAME')`` with the same params (``kernel [3, 3, C, K]``,
    ``bias [K]``, float32), computed by :func:`jaxvis.models.winograd.conv3x3` with ``impl``."""

    features: int
    impl: str = 'direct'
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return conv3x3(x.astype(self.dtype), kernel.astype(self.dtype), self.impl) + bias.astype(self.dtype)


class VGG(nn.Module):
    """VGG feature extractor (no fully connected top).

    Attributes:
      blocks: ``((n_convs, channels), ...)`` per block.
      last_layer: the deepest layer computed and returned (default: the last pool).
      relu: the activation after each conv (``nn.relu``; jaxvis.render swaps in a redirected-gradient one).
      conv: ``((layer, impl), ...)``: layers computed by another algorithm than ``lax``'s direct
        convolution, impl 'winograd2' or 'winograd4' (:mod:`jaxvis.models.winograd`; the params are the
        same). Chosen per layer by :func:`jaxvis.tuning.conv_plan`; empty: every conv direct.

    ``__call__(x)``: x is ``[N, H, W, 3]`` float32 *preprocessed* input (see :func:`preprocess`).
    Returns ``{layer_name: [N, H', W', C]}`` for every layer up to and including ``last_layer``.
    """

    blocks: Sequence[tuple[int, int]] = VGG16_BLOCKS
    last_layer: str | None = None
    dtype: jnp.dtype = jnp.float32
    relu: Callable = nn.relu
    conv: tuple[tuple[str, str], ...] = ()

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        table = layer_table(self.blocks)
        names = [row[0] for row in table]
        last = self.last_layer or names[-1]
        if last not in names:
            raise ValueError(f'unknown layer {last!r}; valid layers: {", ".join(names)}')
        out = {}
        x = x.astype(self.dtype)
        impls = dict(self.conv)
        for name, kind, width, _ in table:
            if kind == 'conv':
                if impls.get(name, 'direct') == 'direct':
                    conv = nn.Conv(width, (3, 3), padding='SAME', name=name, dtype=self.dtype,
                                   param_dtype=jnp.float32)
                else:
                    conv = Conv3x3(width, impls[name], dtype=self.dtype, name=name)
                x = self.relu(conv(x))
            else:
                x = max_pool_2x2(x)
            out[name] = x
            if name == last:
                break
        return out


def VGG16(last_layer: str | None = None, **kw) -> VGG:
    """Keras ``VGG16(include_top=False)`` as a Flax module stopping at ``last_layer``."""
    return VGG(blocks=VGG16_BLOCKS, last_layer=last_layer, **kw)


def VGG19(last_layer: str | None = None, **kw) -> VGG:
    """Keras ``VGG19(include_top=False)`` as a Flax module stopping at ``last_layer``."""
    return VGG(blocks=VGG19_BLOCKS, last_layer=last_layer, **kw)


def TinyVGG(last_layer: str | None = None, **kw) -> VGG:
    """VGG16's layers and names with a few channels each. Used for testing only."""
    return VGG(blocks=TINY_BLOCKS, last_layer=last_layer, **kw)
