"""Your own network as a :class:`~jaxvis.models.Model`: any Flax module, or any function of (params, x).

``from_flax(module, variables)`` captures what the module's submodules return (``capture_intermediates``)
and what it ``sow``s into 'intermediates', each under its path ('Block_3/Conv_1', 'Block_3/act'); the
module's own output is 'output'. Nothing of the module changes. ``from_fn(fn, params)`` wraps
``fn(params, x) -> {layer: activation}`` (an Equinox model's ``__call__``, a plain function). Either way
the model carries its params, and everything past the deepest layer asked for is dropped by XLA.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
from flax.traverse_util import flatten_dict

from jaxvis.errors import JaxvisError
from jaxvis.models import preprocessing
from jaxvis.models.protocol import Model


def _layer_name(path: tuple[str, ...]) -> str:
    parts = path[:-1] if path[-1] == '__call__' else path
    return '/'.join(parts) or 'output'


def _select(acts: dict, layers: tuple[str, ...] | None, upto: str | None) -> dict:
    if layers is not None:
        acts = {n: acts[n] for n in layers if n in acts}
    if upto is not None and upto in acts:  # later layers are not needed; XLA drops their compute
        names = list(acts)
        acts = {n: acts[n] for n in names[:names.index(upto) + 1]}
    return acts


def _layer_tuple(layers) -> tuple[str, ...] | None:
    if layers is None:
        return None
    out = []
    for layer in layers:
        if isinstance(layer, nn.Module):
            if layer.scope is None:
                raise JaxvisError('a layer given as a module must be a bound submodule; give its path instead')
            layer = '/'.join(layer.path)
        out.append(str(layer))
    return tuple(out)


def from_flax(module: nn.Module, variables: dict, *, layers: Sequence[str | nn.Module] | None = None,
              preprocess='unit', deprocess: Callable | None = None, name: str | None = None,
              method: str | Callable | None = None, **call_kwargs) -> Model:
    """A :class:`Model` of a ``flax.linen`` module with its full ``variables`` (params, batch_stats, ...).

    Args:
      module: the module, unchanged; it is called as ``module.apply(variables, x, **call_kwargs)`` on
        ``[N, H, W, 3]`` preprocessed input (pass e.g. ``train=False`` so BatchNorm uses its statistics).
      layers: the layers to offer, by path ('ResNetBlock_3/Conv_1', a sown 'Block_0/act', 'output') or
        as bound submodules; default: every submodule output and every sown value, in forward order.
      preprocess: a mode of :mod:`jaxvis.models.preprocessing` ('unit': [0, 1], 'torch', 'tf', 'caffe',
        'raw') or a function from RGB 0..255 with its inverse ``deprocess``.
      method: the module method to call (default ``__call__``).

    ``--layer all`` on the CLI takes the outputs of ``nn.Conv`` submodules (every listed layer when
    ``layers`` is given). Raises JaxvisError for a bad ``preprocess``.
    """
    pre, de = preprocessing.resolve(preprocess, deprocess)
    wanted = _layer_tuple(layers)
    conv_paths: set[str] = set()

    def capture(mdl, method_name):
        if isinstance(mdl, nn.Conv):
            conv_paths.add('/'.join(mdl.path))
        return True

    def features(variables, x, upto=None):
        _, state = module.apply(variables, x, capture_intermediates=capture, mutable=['intermediates'],
                                method=method, **call_kwargs)
        acts = {}  # flax fills the collection as calls return (a sown value before its module's output)
        for path, values in flatten_dict(state['intermediates']).items():
            values = values if isinstance(values, tuple) else (values,)
            base = _layer_name(path)
            for i, v in enumerate(values):
                if hasattr(v, 'ndim') and v.ndim in (2, 4):
                    acts[base if len(values) == 1 else f'{base}#{i}'] = v
        return _select(acts, wanted, upto)

    class _Kinds(dict):
        """Layer kinds, known once the module has been traced (by any probe of its layers)."""

        def get(self, key, default=None):
            if wanted is not None:
                return 'conv'
            return 'conv' if key in conv_paths else default

    return Model(name or type(module).__name__, features, pre, de, params=variables, kinds=_Kinds())


def from_fn(fn: Callable[[Any, Any], dict], params: Any = None, *, preprocess='unit',
            deprocess: Callable | None = None, name: str = 'fn', layers: Sequence[str] | None = None) -> Model:
    """A :class:`Model` of ``fn(params, x [N, H, W, 3]) -> {layer: [N, H, W, C] or [N, C]}``, carrying
    ``params``. ``layers`` restricts (and orders) what it offers; ``preprocess`` as :func:`from_flax`."""
    pre, de = preprocessing.resolve(preprocess, deprocess)
    wanted = _layer_tuple(layers)

    def features(p, x, upto=None):
        acts = fn(p, x)
        if not isinstance(acts, dict):
            raise JaxvisError(f'{name}: the function must return a dict of named activations, got '
                              f'{type(acts).__name__}')
        return _select(dict(acts), wanted, upto)

    return Model(name, features, pre, de, params=params)
