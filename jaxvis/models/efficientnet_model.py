"""EfficientNet-Lite as a :class:`~jaxvis.models.Model`: its weights read from the reference's PyTorch
state dict (:func:`load_efficientnet`, through :mod:`jaxvis.models.torch_pth`, no torch), its
preprocessing ``(rgb - 127) / 128`` (``'lite'``, :mod:`jaxvis.models.preprocessing`), its layer kinds.

The state dict is efficientnet_pytorch's naming: ``_conv_stem.weight`` ``[32, 3, 3, 3]`` (OIHW),
``_bn0.{weight,bias,running_mean,running_var,num_batches_tracked}``, ``_blocks.N._expand_conv``/``_bn0``,
``_depthwise_conv`` ``[C, 1, k, k]``/``_bn1``, ``_project_conv``/``_bn2``, ``_conv_head``/``_bn1``,
``_fc.weight`` ``[1000, 1280]`` and ``_fc.bias``.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxvis.errors import JaxvisError, WeightsError
from jaxvis.models import preprocessing
from jaxvis.models.efficientnet import ARCHS, Arch, EfficientNetLite, blocks, layer_table
from jaxvis.models.protocol import Model
from jaxvis.models.torch_pth import load_pth

_BN = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}


@functools.cache
def torch_names(arch: Arch) -> dict[tuple[str, ...], str]:
    """``{flax param path: state-dict name}`` for every param of :class:`EfficientNetLite`."""
    groups = [('stem', '_conv_stem', '_bn0')]
    for b in blocks(arch):
        t = f'_blocks.{b.index}.'
        if b.expand != 1:
            groups.append((f'{b.name}_expand', t + '_expand_conv', t + '_bn0'))
        groups += [(f'{b.name}_dwconv', t + '_depthwise_conv', t + '_bn1'),
                   (f'{b.name}_project', t + '_project_conv', t + '_bn2')]
    groups.append(('top', '_conv_head', '_bn1'))
    names = {('logits', 'kernel'): '_fc.weight', ('logits', 'bias'): '_fc.bias'}
    for group, conv, bn in groups:
        names[(group, 'conv', 'kernel')] = f'{conv}.weight'
        names.update({(group, 'bn', ours): f'{bn}.{theirs}' for ours, theirs in _BN.items()})
    return names


def from_state_dict(state: dict[str, np.ndarray], arch: Arch, *, source: str = 'state dict') -> dict:
    """The params of :class:`EfficientNetLite` ``arch`` from a reference state dict: convolutions OIHW ->
    HWIO (depthwise ``[C, 1, k, k]`` -> ``[k, k, 1, C]``), the dense ``[out, in]`` -> ``[in, out]``;
    ``num_batches_tracked`` is ignored. Every array float32.

    Raises WeightsError naming ``source`` for a missing, unexpected or wrongly shaped tensor.
    """
    names = torch_names(arch)
    expected = flatten_dict(abstract_params(arch))
    extra = sorted(set(state) - set(names.values()) - {k for k in state if k.endswith('.num_batches_tracked')})
    if extra:
        raise WeightsError(f'{source}: not EfficientNet-Lite weights of this size: unexpected tensor {extra[0]!r}')
    params = {}
    for path, name in names.items():
        if name not in state:
            raise WeightsError(f'{source}: not EfficientNet-Lite weights: no tensor {name!r}')
        a = np.asarray(state[name])
        a = a.T if a.ndim == 2 else a.transpose(2, 3, 1, 0) if a.ndim == 4 else a
        if a.shape != expected[path].shape or not np.issubdtype(a.dtype, np.floating):
            raise WeightsError(f'{source}: tensor {name!r} is {a.dtype} {list(np.shape(state[name]))}, expected '
                               f'float {list(_torch_shape(expected[path].shape))} for this architecture')
        params[path] = a.astype(np.float32)
    return unflatten_dict(params)


def _torch_shape(shape: tuple) -> tuple:
    return shape[::-1] if len(shape) == 2 else (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape


def load_efficientnet(path: str | os.PathLike, model: str = 'efficientnet_lite0') -> dict:
    """Params for ``model`` ('efficientnet_lite0', or 'tiny_efficientnet' in tests) from a ``.pth``
    state dict of the reference (legacy or zip format), read without torch.

    Raises WeightsError: unreadable or refused file (:func:`jaxvis.models.torch_pth.load_pth`), or tensors
    that do not fit the architecture.
    """
    return from_state_dict(load_pth(path), ARCHS[model], source=str(path))


@functools.cache
def abstract_params(arch: Arch):
    return jax.eval_shape(lambda k: _module(arch).init(k, jnp.zeros((1, 32, 32, 3), jnp.float32))['params'],
                          jax.random.key(0))


def _module(arch: Arch, last_layer: str | None = None) -> EfficientNetLite:
    return EfficientNetLite(arch=arch, last_layer=last_layer)


def _prune(arch: Arch):
    table = layer_table(arch)
    order = list(dict.fromkeys(row[3] for row in table)) + ['logits']
    group = {row[0]: row[3] for row in table}

    def prune(params, upto):
        needed = order[:order.index(group[upto]) + 1] if upto in group else order
        missing = [g for g in needed if g not in params]
        if missing:
            raise JaxvisError(f'params lack {missing[0]!r}, needed for {upto}')
        return {g: params[g] for g in needed}
    return prune


@functools.cache
def efficientnet_model(name: str = 'efficientnet_lite0') -> Model:
    """The :class:`~jaxvis.models.Model` of EfficientNet-Lite ``name`` ('efficientnet_lite0'; the hidden
    'tiny_efficientnet' for tests), 'lite' preprocessing, weights read by :func:`load_efficientnet`."""
    arch = ARCHS[name]
    pre, de = preprocessing.MODES['lite']

    def features(params, x, upto=None):
        return _module(arch, upto).apply({'params': params}, x)

    def init(key):
        return _module(arch).init(key, jnp.zeros((1, 32, 32, 3), jnp.float32))['params']

    return Model(name, features, pre, de, init=init, kinds={row[0]: row[1] for row in layer_table(arch)},
                 prune=_prune(arch), load=functools.partial(load_efficientnet, model=name))
