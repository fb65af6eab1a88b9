"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of tensorflow/tpu) as a Flax module, with its
ImageNet head, readable layer names and the model.

The structure is the reference's (``efficientnet-lite-pytorch`` 0.1.0, itself efficientnet_pytorch's):
a 3x3 stride-2 stem, 16 MBConv blocks (1x1 expansion, depthwise kxk, 1x1 projection, a residual in a
stage's repeated blocks; no squeeze-excitation in Lite), a 1x1 head to 1280, global average pooling
and a 1000-way dense layer. Every convolution is followed by BatchNorm in inference mode (epsilon 1e-3)
and, but for the projections, ReLU6. Padding is TensorFlow's 'SAME' for the actual input size (the
reference pads statically for 224, which is the same at 224).

Layers (Keras's EfficientNet naming, stage number and block letter): ``stem``; per block, e.g.
``block2a_expand`` and ``block2a_dwconv`` (after their ReLU6) and ``block2a`` (the block's output,
linear); ``top`` (the 1280 head after ReLU6, ``[N, 7, 7, 1280]`` at 224); ``avg_pool`` ``[N, 1280]``;
``logits`` ``[N, 1000]`` (before the softmax). The module computes nothing past ``last_layer``.
Weights are never read here: :mod:`jaxvis.models.efficientnet_model`.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvis.models.depthwise import depthwise_conv

EPS = 1e-3  # efficientnet_lite's batch_norm_epsilon


class Arch(NamedTuple):
    """stem width; per stage ``(repeats, kernel, stride, expand ratio, output width)``; head width; classes."""

    stem: int
    stages: tuple[tuple[int, int, int, int, int], ...]
    head: int
    classes: int


# efficientnet_lite_builder.py's block strings for lite0 (width and depth 1.0, stem and head not scaled).
LITE0 = Arch(32, ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                  (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)), 1280, 1000)
# The reference's code at width 0.125 with three stages and 10 classes (scripts/efficientnet_reference.py).
# For testing only.
TINY = Arch(8, ((1, 3, 1, 1, 8), (2, 3, 2, 6, 8), (1, 5, 2, 4, 8)), 160, 10)
ARCHS = {'efficientnet_lite0': LITE0, 'tiny_efficientnet': TINY}


class Block(NamedTuple):
    name: str       # 'block2a'
    index: int      # position among all blocks (the reference's ``_blocks.N``)
    c_in: int
    c_out: int
    kernel: int
    stride: int
    expand: int
    residual: bool  # the input is added to the output


@functools.cache
def blocks(arch: Arch) -> tuple[Block, ...]:
    """Every MBConv block in order; a stage's first block strides, the others repeat at stride 1.

    Only the repeats add their input (the reference's rule: a stage's first block holds its stride as a
    list, ``[1] != 1``); for Lite0 this is also TensorFlow's, since every stage's first block changes width.
    """
    out, c_in = [], arch.stem
    for s, (repeats, kernel, stride, expand, c_out) in enumerate(arch.stages, start=1):
        for r in range(repeats):
            out.append(Block(f'block{s}{chr(ord("a") + r)}', len(out), c_in, c_out, kernel,
                             stride if r == 0 else 1, expand, r > 0))
            c_in = c_out
    return tuple(out)


@functools.cache
def layer_table(arch: Arch) -> tuple[tuple[str, str, int, str], ...]:
    """``(layer, kind, channels, param group)`` in forward order; the group is the last params it needs.

    kinds: 'conv' (after a ReLU6), 'block' (a block's linear output), 'pool', 'dense'.
    """
    rows = [('stem', 'conv', arch.stem, 'stem')]
    for b in blocks(arch):
        width = b.c_in * b.expand
        if b.expand != 1:
            rows.append((f'{b.name}_expand', 'conv', width, f'{b.name}_expand'))
        rows.append((f'{b.name}_dwconv', 'conv', width, f'{b.name}_dwconv'))
        rows.append((b.name, 'block', b.c_out, f'{b.name}_project'))
    rows += [('top', 'conv', arch.head, 'top'), ('avg_pool', 'pool', arch.head, 'top'),
             ('logits', 'dense', arch.classes, 'logits')]
    return tuple(rows)


class BatchNorm(nn.Module):
    """BatchNorm in inference mode, its statistics held as params (``scale``, ``bias``, ``mean``,
    ``var``, each ``[C]`` float32): ``(x - mean) * scale / sqrt(var + 1e-3) + bias``, in x's dtype."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = (x.shape[-1],)
        scale = self.param('scale', nn.initializers.ones_init(), c, jnp.float32)
        bias = self.param('bias', nn.initializers.zeros_init(), c, jnp.float32)
        mean = self.param('mean', nn.initializers.zeros_init(), c, jnp.float32)
        var = self.param('var', nn.initializers.ones_init(), c, jnp.float32)
        inv = scale * jax.lax.rsqrt(var + EPS)
        return x * inv.astype(x.dtype) + (bias - mean * inv).astype(x.dtype)


class ConvBN(nn.Module):
    """A bias-free convolution ('SAME', ``kernel [k, k, C_in or 1, C_out]``) and its :class:`BatchNorm`."""

    features: int
    kernel: int = 1
    stride: int = 1
    depthwise: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.depthwise:
            x = DepthwiseConv(self.kernel, self.stride, name='conv')(x)
        else:
            x = nn.Conv(self.features, (self.kernel, self.kernel), strides=self.stride, padding='SAME',
                        use_bias=False, dtype=None, param_dtype=jnp.float32, name='conv')(x)
        return BatchNorm(name='bn')(x)


class DepthwiseConv(nn.Module):
    """A bias-free depthwise convolution, ``kernel [k, k, 1, C]`` as ``nn.Conv`` with
    ``feature_group_count=C`` holds it, computed by :func:`jaxvis.models.depthwise.depthwise_conv`."""

    kernel_size: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (self.kernel_size, self.kernel_size, 1, x.shape[-1])
        kernel = self.param('kernel', nn.initializers.lecun_normal(), shape, jnp.float32)
        return depthwise_conv(x, kernel, self.stride)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with its head.

    ``__call__(x)``: x ``[N, H, W, 3]`` preprocessed input (``(rgb - 127) / 128``), float32 or bfloat16.
    Returns ``{layer: activation}`` for every layer of :func:`layer_table` up to ``last_layer``
    (default 'logits'): ``[N, H', W', C]``, or ``[N, C]`` for ``avg_pool`` and ``logits``.
    """

    arch: Arch = LITE0
    last_layer: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        names = [row[0] for row in layer_table(self.arch)]
        last = self.last_layer or names[-1]
        if last not in names:
            raise ValueError(f'unknown layer {last!r}; valid layers: {", ".join(names)}')
        out = {}

        def done(name, value):
            out[name] = value
            return name == last

        x = nn.relu6(ConvBN(self.arch.stem, 3, 2, name='stem')(x))
        if done('stem', x):
            return out
        for b in blocks(self.arch):
            inputs, width = x, b.c_in * b.expand
            if b.expand != 1:
                x = nn.relu6(ConvBN(width, name=f'{b.name}_expand')(x))
                if done(f'{b.name}_expand', x):
                    return out
            x = nn.relu6(ConvBN(width, b.kernel, b.stride, depthwise=True, name=f'{b.name}_dwconv')(x))
            if done(f'{b.name}_dwconv', x):
                return out
            x = ConvBN(b.c_out, name=f'{b.name}_project')(x)
            if b.residual:
                x = x + inputs
            if done(b.name, x):
                return out
        x = nn.relu6(ConvBN(self.arch.head, name='top')(x))
        if done('top', x):
            return out
        x = jnp.mean(x, axis=(1, 2))
        if done('avg_pool', x):
            return out
        done('logits', nn.Dense(self.arch.classes, dtype=None, param_dtype=jnp.float32, name='logits')(x))
        return out
