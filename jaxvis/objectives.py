"""Objectives: small closures from a dict of activations to a scalar to *maximize* (after Lucid's
``lucid/optvis/objectives.py``; Lucent's are losses, minimized).

Activations are ``{layer: [B, H, W, C]}`` (or ``[B, C]`` for a layer without spatial axes) for a
batch of ``B`` images, ``B = 1`` in the filter engine; single-image objectives average over the batch.
The filter index ``f`` is an int array so the objective can be ``vmap``-ed over filters.

Objectives add, subtract, negate and scale: ``0.2 * channel('block4_conv1', 20) + 0.8 * channel(...)``,
``channel(layer) + 15.0 * diversity(layer)``. *Layer terms* (:func:`deepdream`, :func:`layer_mean`) are the
mean of an elementwise function over a whole layer; sums and scales of them keep their ``terms``, which is
what DeepDream's tiles need to split the objective exactly over tiles.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Term(NamedTuple):
    """``weight * mean(fn(acts[layer][:, crop:-crop, crop:-crop]))`` with ``fn`` 'square' or 'identity'."""

    layer: str
    weight: float
    fn: str = 'square'
    crop: int = 0


def term_values(a: jax.Array, fn: str) -> jax.Array:
    """The elementwise part of a :class:`Term`: ``a * a`` ('square') or ``a`` ('identity')."""
    return a * a if fn == 'square' else a


class Objective:
    """``(acts, f) -> []`` scalar to maximize, that adds, subtracts, negates and scales.

    ``other`` may be a number (or a 0-d array) or another objective (a plain ``(acts, f)`` callable is
    wrapped); ``a * b`` of two objectives multiplies their values. ``terms`` is set when the objective is
    a weighted sum of layer terms (and only then).
    """

    def __init__(self, fn: Callable[[dict[str, jax.Array], jax.Array], jax.Array], description: str = '',
                 terms: tuple[Term, ...] | None = None):
        self.fn = fn
        self.description = description or getattr(fn, '__name__', 'objective')
        self.terms = terms

    def __call__(self, acts, f):
        return self.fn(acts, f)

    def __repr__(self):
        return self.description

    def __add__(self, other):
        if callable(other):
            o = as_objective(other)
            terms = self.terms + o.terms if self.terms is not None and o.terms is not None else None
            return Objective(lambda a, f: self(a, f) + o(a, f), f'({self} + {o})', terms)
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
        terms = None
        if self.terms is not None and isinstance(other, (int, float)):
            terms = tuple(t._replace(weight=t.weight * float(other)) for t in self.terms)
        return Objective(lambda a, f: other * self(a, f), f'{other}*{self}', terms)

    __rmul__ = __mul__

    def __truediv__(self, number):
        return self * (1.0 / number)


def as_objective(fn) -> Objective:
    """``fn`` as an :class:`Objective` (unchanged if it already is one)."""
    return fn if isinstance(fn, Objective) else Objective(fn)


def _pick(a: jax.Array, n: int | None, f: jax.Array) -> jax.Array:
    return jnp.take(a, f if n is None else n, axis=-1)


def channel(layer: str, n: int | None = None) -> Objective:
    """Mean over batch and space of channel ``n`` of ``layer`` (``n=None``: the filter ``f``).

    Seed 003's ``K.mean(layer_output[:, :, :, f])``; on a ``[B, C]`` layer (logits, pooled features) it
    is unit ``n`` (a class) averaged over the batch.
    """
    return Objective(lambda acts, f: jnp.mean(_pick(acts[layer], n, f)),
                     f'channel({layer}, {"f" if n is None else n})')


def class_probability(layer: str, n: int | None = None) -> Objective:
    """The softmax over the last axis of ``layer`` (``[B, C]`` logits) at class ``n`` (``None``: the
    filter ``f``), in [0, 1], mean over the batch: keras-vis's and tf-keras-vis's class score on the
    probabilities. Unlike :func:`channel` on the logits, it also pushes the other classes down.
    """
    return Objective(lambda acts, f: jnp.mean(_pick(jax.nn.softmax(acts[layer], axis=-1), n, f)),
                     f'class_probability({layer}, {"f" if n is None else n})')


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


def _term(layer: str, fn: str, crop: int, name: str) -> Objective:
    t = Term(layer, 1.0, fn, int(crop))

    def objective(acts, f):
        a = acts[layer]
        if crop:
            a = a[:, crop:a.shape[1] - crop, crop:a.shape[2] - crop]
        return jnp.mean(term_values(a, fn))
    return Objective(objective, f'{name}({layer}' + (f', crop={crop})' if crop else ')'), (t,))


def deepdream(layer: str, *, crop: int = 0) -> Objective:
    """Mean of squares of the whole layer (DeepDream's "interestingness"); ignores ``f``.

    ``crop`` leaves out that many activations at each border (keras.io's example crops 2).
    """
    return _term(layer, 'square', crop, 'deepdream')


def layer_mean(layer: str, *, crop: int = 0) -> Objective:
    """Mean of the whole layer's activations; ignores ``f``."""
    return _term(layer, 'identity', crop, 'layer_mean')


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
