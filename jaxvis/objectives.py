"""Objectives: small closures from a dict of activations to a scalar to maximize.

Activations are ``{layer: [1, H, W, C]}`` for one image; the filter index is an int array so the
objective can be ``vmap``-ed over filters.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Objective = Callable[[dict[str, jax.Array], jax.Array], jax.Array]


def channel_mean(layer: str) -> Objective:
    """Mean over space of channel ``f`` of ``layer`` (seed 003's ``K.mean(layer_output[:, :, :, f])``)."""
    def objective(acts, f):
        a = acts[layer]
        return jnp.mean(jnp.take(a, f, axis=-1))
    return objective


def layer_mean_square(layer: str) -> Objective:
    """Mean of squares of a whole layer (DeepDream's objective); ignores the filter index."""
    return lambda acts, f: jnp.mean(jnp.square(acts[layer]))
