"""Penalties on the image: scalar terms of the loss, ``[H, W, C] -> []`` (keras-vis's regularizers).

:mod:`jaxvis.regularizers` change the image after each step; a penalty is instead a term the optimizer
minimizes along with ``-objective``: :func:`jaxvis.optim.add_penalty_gradient` adds its weighted gradient
to the loss's gradient at the head of an optax chain (as ``optax.add_decayed_weights`` adds ``w * params``).
``x`` is one image in the model's input space (for VGG16: caffe BGR minus the mean, one unit a grey level).
Both are normalized as keras-vis's ``vis.regularizers.normalize``: divided by the number of values
``H * W * C`` (``np.prod(get_img_shape(input)[1:])``), so a weight means the same at any image size.
Factories are cached (equal arguments, the same object), so configs holding them compare equal.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxvis.util import check_float


class Penalty(NamedTuple):
    """``value(x [H, W, C] float32) -> [] float32``, to be minimized; ``name`` describes it in manifests."""

    value: Callable[[jax.Array], jax.Array]
    name: str


@functools.cache
def lp_norm(p: float = 6.0) -> Penalty:
    """keras-vis ``LPNorm``: ``(sum |x|^p)^(1/p) / (H W C)``, ``p`` >= 1 (its default 6; no infinity norm)."""
    p = check_float('p', p, low=1.0)
    return Penalty(lambda x: jnp.sum(jnp.abs(x) ** p) ** (1.0 / p) / x.size, f'lp_norm(p={p})')


@functools.cache
def total_variation(beta: float = 2.0) -> Penalty:
    """keras-vis ``TotalVariation``: ``sum_{h<H-1, w<W-1, c} (dh^2 + dw^2)^(beta/2) / (H W C)`` with
    ``dh = x[h+1, w] - x[h, w]``, ``dw = x[h, w+1] - x[h, w]`` (no wrap-around; its default beta 2).
    ``beta`` in [2, 4]: below 2 the gradient is infinite wherever a pixel equals both neighbours."""
    beta = check_float('beta', beta, low=2.0, high=4.0)

    def value(x):
        dh = x[1:, :-1] - x[:-1, :-1]
        dw = x[:-1, 1:] - x[:-1, :-1]
        return jnp.sum((dh * dh + dw * dw) ** (beta / 2.0)) / x.size
    return Penalty(value, f'total_variation(beta={beta})')
