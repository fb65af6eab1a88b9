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


# ---------------------------------------------------------------- composable objectives (after Lucid's
# lucid/optvis/objectives.py). Here activations may hold a batch: ``{layer: [B, H, W, C]}``; single-image
# objectives average over it. All are to be *maximized* (Lucid's convention too; Lucent's are losses).

class Objective:
    """``(acts, f) -> []`` scalar to maximize, that adds, subtracts, negates and scales.

    ``0.2 * channel('block4_conv1', 20) + 0.8 * channel('block4_conv1', 21)`` and
    ``channel(layer) + 100.0 * diversity(layer)`` are Objectives. ``other`` may be a number (or a 0-d
    array) or another objective (a plain ``(acts, f)`` callable is wrapped); ``a * b`` of two objectives
    multiplies their values. ``f`` is the filter being visualized, an int array (so ``vmap`` works).
    """

    def __init__(self, fn: Callable[[dict[str, jax.Array], jax.Array], jax.Array], description: str = ''):
        self.fn = fn
        self.description = description or getattr(fn, '__name__', 'objective')

    def __call__(self, acts, f):
        return self.fn(acts, f)

    def __repr__(self):
        return self.description

    def __add__(self, other):
        if callable(other):
            o = as_objective(other)
            return Objective(lambda a, f: self(a, f) + o(a, f), f'({self} + {o})')
        return Objective(lambda a, f: self(a, f) + other, f'({self} + {other})')

    __radd__ = __add__

    def __neg__(self):
        return -1.0 * self

    def __sub__(self, other):
        return self + (-1.0 * as_objective(other) if callable(other) else -other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if callable(other):
            o = as_objective(other)
            return Objective(lambda a, f: self(a, f) * o(a, f), f'{self}*{o}')
        return Objective(lambda a, f: other * self(a, f), f'{other}*{self}')

    __rmul__ = __mul__

    def __truediv__(self, number):
        return self * (1.0 / number)


def as_objective(fn) -> Objective:
    """``fn`` as an :class:`Objective` (unchanged if it already is one)."""
    return fn if isinstance(fn, Objective) else Objective(fn)


def _pick(a: jax.Array, n: int | None, f: jax.Array) -> jax.Array:
    return jnp.take(a, f if n is None else n, axis=-1)


def channel(layer: str, n: int | None = None) -> Objective:
    """Mean over batch and space of channel ``n`` of ``layer`` (``n=None``: the filter ``f``)."""
    return Objective(lambda acts, f: jnp.mean(_pick(acts[layer], n, f)),
                     f'channel({layer}, {"f" if n is None else n})')


def neuron(layer: str, n: int | None = None, *, y: int | None = None, x: int | None = None) -> Objective:
    """Channel ``n`` (``None``: ``f``) of ``layer`` at one position, mean over the batch.

    The position defaults to the centre ``(H // 2, W // 2)`` of the activation map (for even sizes the
    bottom-right of the central 2x2, as Lucid's ``neuron``).
    """
    def objective(acts, f):
        a = acts[layer]
        yy = a.shape[1] // 2 if y is None else y
        xx = a.shape[2] // 2 if x is None else x
        return jnp.mean(_pick(a[:, yy, xx, :], n, f))
    return Objective(objective, f'neuron({layer}, {"f" if n is None else n}, y={y}, x={x})')


def deepdream(layer: str) -> Objective:
    """Mean of squares of the whole layer (DeepDream's "interestingness"); ignores ``f``."""
    return Objective(layer_mean_square(layer), f'deepdream({layer})')


def gram_cosine(a: jax.Array) -> jax.Array:
    """``[B, H, W, C]`` -> ``[B, B]`` cosine similarities of the per-image Gram matrices ``F^T F``."""
    flat = a.reshape(a.shape[0], -1, a.shape[-1])
    grams = jnp.einsum('bpc,bpd->bcd', flat, flat).reshape(a.shape[0], -1)
    grams = grams * jax.lax.rsqrt(jnp.maximum(jnp.sum(grams * grams, -1, keepdims=True), 1e-10))
    return grams @ grams.T


def diversity(layer: str) -> Objective:
    """Minus Lucid's ``diversity``: ``-sum_{i != j} cos(G_i, G_j) / B`` over a batch of ``B`` images,
    ``G`` the Gram matrix of ``layer``'s activations. Larger means more different images; it is
    ``-(B - 1)`` for identical images. Add it with a positive weight (Lucid subtracts its own; e.g.
    ``channel(layer) + 100.0 * diversity(layer)``). Ignores ``f``; needs the whole batch in ``acts``.
    """
    def objective(acts, f):
        cos = gram_cosine(acts[layer])
        b = cos.shape[0]
        return -(jnp.sum(cos) - jnp.trace(cos)) / b
    return Objective(objective, f'diversity({layer})')
