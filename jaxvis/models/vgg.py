"""VGG16 / VGG19 as Flax modules with Keras layer names, Keras 'caffe' preprocessing, and the models.

The module returns a dict of named activations and computes nothing past ``last_layer``. Weights are
never loaded here: see :func:`jaxvis.models.keras_h5.load_keras_h5`. On CPU a VGG model may run its
deeper convolutions as Winograd (:func:`vgg_model`'s ``specialize``, :mod:`jaxvis.backend.conv_plan`);
the engine never knows.
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvis.backend.conv_plan import CONV_MODES, conv_plan
from jaxvis.errors import JaxvisError
from jaxvis.models.protocol import Model
from jaxvis.models.vgg_layers import Conv3x3, max_pool_2x2
from jaxvis.models.winograd import KERNEL, prepare

# Keras `vgg16.preprocess_input` ('caffe' mode): RGB -> BGR, minus the ImageNet BGR mean, no scaling.
BGR_MEAN = (103.939, 116.779, 123.68)

VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
VGG19_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
# Same topology and layer names as VGG16, a few channels per layer: for tests only.
TINY_BLOCKS = ((2, 4), (2, 6), (3, 8), (3, 8), (3, 8))
BLOCKS = {'vgg16': VGG16_BLOCKS, 'vgg19': VGG19_BLOCKS, 'tiny': TINY_BLOCKS}


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


class VGG(nn.Module):
    """VGG feature extractor (no fully connected top).

    Attributes:
      blocks: ``((n_convs, channels), ...)`` per block.
      last_layer: the deepest layer computed and returned (default: the last pool).
      conv: ``((layer, impl), ...)``: layers computed by another algorithm than ``lax``'s direct
        convolution, impl 'winograd2' or 'winograd4' (:mod:`jaxvis.models.winograd`; the params are the
        same); empty: every conv direct.
      after: None, or a layer: ``x`` is then that layer's activation and only the layers after it are
        computed and returned (:func:`vgg_model`'s ``resume``).

    ``__call__(x)``: x is ``[N, H, W, 3]`` *preprocessed* input (see :func:`preprocess`), float32 or
    bfloat16 (the convolutions run in the dtype of the input and params).
    Returns ``{layer_name: [N, H', W', C]}`` for every layer up to and including ``last_layer``.
    """

    blocks: Sequence[tuple[int, int]] = VGG16_BLOCKS
    last_layer: str | None = None
    conv: tuple[tuple[str, str], ...] = ()
    after: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        table = layer_table(self.blocks)
        names = [row[0] for row in table]
        last = self.last_layer or names[-1]
        if last not in names:
            raise ValueError(f'unknown layer {last!r}; valid layers: {", ".join(names)}')
        out = {}
        impls = dict(self.conv)
        if self.after is not None:
            table = table[names.index(self.after) + 1:]
        for name, kind, width, _ in table:
            if kind == 'conv':
                if impls.get(name, 'direct') == 'direct':
                    conv = nn.Conv(width, (3, 3), padding='SAME', name=name, dtype=None, param_dtype=jnp.float32)
                else:
                    conv = Conv3x3(width, impls[name], name=name)
                x = nn.relu(conv(x))
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


# ---------------------------------------------------------------- the models

def _convs(blocks, size: int, upto: str | None) -> tuple[tuple[str, int, int, int], ...]:
    """``(conv name, input side, input channels, output channels)`` for a ``size`` input, up to ``upto``."""
    out, side, c_in = [], size, 3
    for name, kind, width, _ in layer_table(blocks):
        if kind == 'pool':
            side //= 2
        else:
            out.append((name, side, c_in, width))
        c_in = width
        if name == upto:
            break
    return tuple(out)


def _features(blocks, plan):
    def features(params, x, upto=None):
        return VGG(blocks=blocks, last_layer=upto, conv=plan).apply({'params': params}, x)
    return features


def _resume(blocks, plan):
    def resume(params, h, after, upto=None):
        names = {row[0] for row in layer_table(blocks)}
        if after not in names:
            raise ValueError(f'unknown layer {after!r}')
        return VGG(blocks=blocks, last_layer=upto, conv=plan, after=after).apply({'params': params}, h)
    return resume


def _stem(blocks):
    """VGG's stem: blocks 1-2 (the 64-128-channel layers at full and half resolution), cut after
    'block2_pool'; None for a target inside them or a side under 32 (nothing left to gain)."""
    names = [row[0] for row in layer_table(blocks)]
    cut = 'block2_pool'

    def stem(size: int, upto: str) -> str | None:
        if size < 32 or upto not in names or names.index(upto) <= names.index(cut):
            return None
        return cut
    return stem


def prepare_params(plan, dtype: str = 'float32'):
    """``fn(params) -> params`` with each Winograd layer of ``plan`` (``((layer, impl), ...)``) holding
    ``{'u', 'ub', 'bias'}`` (:func:`jaxvis.models.winograd.prepare`, in ``dtype``, the step's precision)
    in place of ``{'kernel', 'bias'}``:
    the same activations as the plain params up to rounding (the transforms are computed apart from the
    step), without the kernel transforms in every step. A oneDNN layer holds ``{'wf', 'wb', 'bias'}``, its
    kernel in oneDNN's layouts for ``dtype``, the step's precision."""
    impls = {name: impl for name, impl in plan if impl != 'direct'}

    def prepared(params):
        out = dict(params)
        for name, impl in impls.items():
            if name in out and 'kernel' in out[name]:
                kernel, bias = out[name]['kernel'], out[name]['bias']
                if impl == 'onednn':
                    wf, wb = prepare(kernel.astype(dtype), impl)
                    out[name] = {'wf': wf, 'wb': wb, 'bias': bias}
                else:   # in the step's precision too: a bf16 step converts nothing per call
                    u, ub = jax.tree_util.tree_map(lambda v: v.astype(dtype), prepare(kernel, impl))
                    out[name] = {'u': u, 'ub': ub, 'bias': bias}
        return out
    return prepared


def _prune(blocks):
    names = [row[0] for row in layer_table(blocks)]
    convs = {row[0] for row in layer_table(blocks) if row[1] == 'conv'}

    def prune(params, upto):
        needed = names[:names.index(upto) + 1] if upto in names else names
        missing = [n for n in needed if n in convs and n not in params]
        if missing:
            raise JaxvisError(f'params lack layer {missing[0]!r} needed for {upto}')
        return {n: params[n] for n in needed if n in params}
    return prune


@functools.cache
def vgg_model(name: str = 'vgg16', *, conv: str = 'auto') -> Model:
    """The :class:`~jaxvis.models.Model` of a Keras VGG (``name``: 'vgg16', 'vgg19' or 'tiny', the test
    model), caffe preprocessing.

    ``conv`` picks the convolution algorithms on CPU (:func:`jaxvis.backend.conv_plan.conv_plan`):
    'auto' runs the deeper convolutions as Winograd where measured faster, 'direct' never,
    'winograd2' / 'winograd4' always. The same params serve every variant (a Winograd variant's
    ``prepare`` transforms its kernels once, for a faster step).
    """
    if conv not in CONV_MODES:
        raise JaxvisError(f'conv must be one of {", ".join(CONV_MODES)}; got {conv!r}')
    blocks = BLOCKS[name]
    kinds = {row[0]: row[1] for row in layer_table(blocks)}
    variants: dict = {}

    def specialize(*, size: int, batch: int, dtype: str = 'float32', upto: str | None = None,
                   after: str | None = None, whole: bool = False) -> Model:
        convs = _convs(blocks, size, upto)
        if after is not None:  # only the layers after it are run
            order = [row[0] for row in layer_table(blocks)]
            convs = tuple(c for c in convs if order.index(c[0]) > order.index(after))
        plan = conv_plan(convs, batch, conv, dtype, kernel=KERNEL, whole=whole)
        if not plan:
            return base
        key = (plan, dtype)   # a oneDNN layer's prepared kernel is in the step's precision
        if key not in variants:
            variants[key] = Model(name, _features(blocks, plan), preprocess, deprocess, init=base.init,
                                   kinds=kinds, prune=base.prune, prepare=prepare_params(plan, dtype),
                                   stem=base.stem, resume=_resume(blocks, plan))
        return variants[key]

    def init(key):
        return VGG(blocks=blocks).init(key, jnp.zeros((1, 32, 32, 3), jnp.float32))['params']

    base = Model(name, _features(blocks, ()), preprocess, deprocess, init=init, kinds=kinds,
                 specialize=specialize, prune=_prune(blocks), stem=_stem(blocks), resume=_resume(blocks, ()))
    return base
