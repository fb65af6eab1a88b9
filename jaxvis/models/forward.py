"""The one forward pass per (model, deepest layer, precision, ReLU gradient), cached.

The filter step, its scorer, DeepDream's tiles and the metrics all get their forward pass here, so each
is one object per configuration: jitted code that takes it as a static argument compiles once.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxvis.errors import JaxvisError
from jaxvis.models.protocol import Model
from jaxvis.models.redirect import with_redirected_relus

DTYPES = ('float32', 'bfloat16')


def _cast(tree, dtype):
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, tree)


@functools.lru_cache(maxsize=None)
def forward(model: Model, upto: str | None, *, dtype: str = 'float32', redirect: bool = False,
            after: str | None = None) -> Callable:
    """``fn(params, x [N, H, W, 3] model input, active=None) -> {layer: activation}`` up to ``upto``.

    ``dtype='bfloat16'`` runs the network in bf16 (params and input cast; activations come out bf16).
    ``redirect``: the ReLUs get Lucid's redirected gradient while ``active`` (a 0-d float) is 1
    (:mod:`jaxvis.models.redirect`); their values are unchanged.
    ``after``: x is that layer's activation instead, and the layers after it are computed (the
    model's ``resume`` hook).
    """
    if after is not None and model.resume is None:
        raise JaxvisError(f'model {model.name!r} cannot resume after a layer')

    def plain(params, x):
        if dtype != 'float32':
            params, x = _cast(params, jnp.dtype(dtype)), x.astype(jnp.dtype(dtype))
        return model.features(params, x, upto) if after is None else model.resume(params, x, after, upto)

    if not redirect:
        return lambda params, x, active=None: plain(params, x)
    redirected = with_redirected_relus(plain)
    return lambda params, x, active: redirected(active, params, x)


def params_up_to(model: Model, params: Any, upto: str) -> Any:
    """The params that layers up to ``upto`` need (the model's ``prune``; all of them otherwise), or the
    model's own when ``params`` is None. Raises JaxvisError (from ``prune``) for missing layers."""
    if params is None:
        params = model.params
    if params is None:
        raise JaxvisError(f'model {model.name!r} carries no params: pass them')
    return model.prune(params, upto) if model.prune is not None else params
