"""Random image transforms ``(key, x) -> x`` applied before the forward pass (gradients flow back).

``x`` is ``[H, W, C]`` (one image); use ``jax.vmap`` for batches. Keys are explicit; no global RNG.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxvis import image_ops

Transform = Callable[[jax.Array, jax.Array], jax.Array]


def identity() -> Transform:
    return lambda key, x: x


def jitter(max_shift: int) -> Transform:
    """Roll the image by a uniform random ``(dy, dx)`` in ``[-max_shift, max_shift]`` (keras-vis Jitter).

    Maximizing through a roll and rolling back afterwards, as keras-vis does, is the same as letting
    the gradient flow through the roll; the image itself is not moved.
    """
    if max_shift <= 0:
        return identity()

    def apply(key, x):
        d = jax.random.randint(key, (2,), -max_shift, max_shift + 1)
        return image_ops.roll2d(x, d[0], d[1])
    return apply


def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` in order, each with its own key folded from ``key``."""
    def apply(key, x):
        for i, t in enumerate(transforms):
            x = t(jax.random.fold_in(key, i), x)
        return x
    return apply
