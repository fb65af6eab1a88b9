"""The seeds' update rules as optax ``GradientTransformation``s, so every recipe is one optax chain.

jaxvis *maximizes* an objective; optax minimizes. The step hands the optimizer the gradient of the
loss ``-objective`` and adds the updates, so ``optax.sgd(lr)`` is plain ascent with step ``lr`` and
``optax.adam(0.05)`` is Lucid's optimizer. The transformations here follow optax's conventions:

* :func:`scale_by_rms`: seed 003's ``grads / (sqrt(mean(grads^2)) + 1e-7)``, the mean over every leaf;
* :func:`scale_by_progress`: the deep-visualization-toolbox's 'progress' learning rate,
  ``lr = min(max_lr, desired_progress / sum(g^2))``, then a step of ``-lr * g``;
* :func:`ascent`: the pixel recipes' whole update, ``chain(normalize?, step size)``;
* :func:`add_penalty_gradient`: ``g + weight * grad(penalty)(params)``, a loss term on the params
  (:mod:`jaxvis.penalties`, keras-vis's LPNorm and TotalVariation);
* :func:`keras_vis_rmsprop`: keras-vis 0.4.1's ``Optimizer._rmsprop`` step, learning rate 1.

Factories are cached: the same arguments give the same object, so configs built twice from the same
preset compare equal and reuse compiled steps. :func:`describe` names a transformation for manifests.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

EPS = 1e-7
_NAMES: dict = {}
_PLAIN: set = set()


def _named(tx: optax.GradientTransformation, name: str, plain: bool = False) -> optax.GradientTransformation:
    _NAMES[tx] = name
    if plain:
        _PLAIN.add(tx)
    return tx


def describe(tx) -> str | None:
    """A short description of ``tx`` (jaxvis's own names; ``repr`` for others), None for None."""
    if tx is None:
        return None
    return _NAMES.get(tx, repr(tx))


def is_plain(tx) -> bool:
    """Whether ``tx`` is stateless and maps a zero gradient to a zero update whatever the step
    (:func:`ascent`): then an image with zero gradient is a fixed point of the step."""
    return tx in _PLAIN


def _tree_rms(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in leaves) / sum(x.size for x in leaves))


@functools.cache
def scale_by_rms() -> optax.GradientTransformation:
    """``g / (rms(g) + 1e-7)``, the RMS over every leaf together (seed 003's ``normalize``). Stateless."""
    def update(updates, state, params=None):
        rms = _tree_rms(updates)
        return jax.tree_util.tree_map(lambda a: a / (rms + EPS), updates), state

    return _named(optax.GradientTransformation(lambda params: optax.EmptyState(), update), 'scale_by_rms()')


@functools.cache
def scale_by_progress(max_lr: float = 100.0, desired_progress: float = 2.0) -> optax.GradientTransformation:
    """``-min(max_lr, desired_progress / (sum(g^2) + 1e-7)) * g`` (deep-visualization-toolbox's
    ``lr_policy='progress'``: the step that would raise a linear objective by ``desired_progress``)."""
    def update(updates, state, params=None):
        sq = sum(jnp.sum(jnp.square(a)) for a in jax.tree_util.tree_leaves(updates))
        lr = jnp.minimum(max_lr, desired_progress / (sq + EPS))
        return jax.tree_util.tree_map(lambda a: -(lr * a), updates), state

    return _named(optax.GradientTransformation(lambda params: optax.EmptyState(), update),
                  f'scale_by_progress(max_lr={max_lr}, desired_progress={desired_progress})')


@functools.cache
def ascent(step_size: float = 1.0, *, normalize: str = 'rms', lr_policy: str = 'constant',
           max_lr: float = 100.0, desired_progress: float = 2.0) -> optax.GradientTransformation:
    """The pixel recipes' update: optionally RMS-normalize, then a step of ``step_size`` (or the
    'progress' rate). ``normalize`` 'rms' | 'none'; ``lr_policy`` 'constant' | 'progress'."""
    parts = [scale_by_rms()] if normalize == 'rms' else []
    parts.append(scale_by_progress(max_lr, desired_progress) if lr_policy == 'progress' else sgd(step_size))
    tx = parts[0] if len(parts) == 1 else chain(*parts)
    name = (f'ascent(step_size={step_size}, normalize={normalize!r}' +
            (f', lr_policy=progress, max_lr={max_lr}, desired_progress={desired_progress})'
             if lr_policy == 'progress' else ')'))
    return _named(tx, name, plain=True)


@functools.cache
def sgd(learning_rate: float) -> optax.GradientTransformation:
    """``optax.sgd(learning_rate)``, cached."""
    return _named(optax.sgd(learning_rate), f'sgd({learning_rate})')


@functools.cache
def adam(learning_rate: float) -> optax.GradientTransformation:
    """``optax.adam(learning_rate)``, cached (Lucid's optimizer at 0.05)."""
    return _named(optax.adam(learning_rate), f'adam({learning_rate})')


@functools.cache
def nadam(learning_rate: float) -> optax.GradientTransformation:
    """``optax.nadam(learning_rate)`` (Adam with Nesterov momentum), cached: MACO's optimizer at 1.0
    (Xplique's Keras ``Nadam(1.0)``, Horama's ``torch.optim.NAdam(lr=1.0)``; both also decay the
    momentum by Dozat's schedule, which optax's ``nadam`` does not)."""
    return _named(optax.nadam(learning_rate), f'nadam({learning_rate})')


@functools.cache
def chain(*txs: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optax.chain(*txs)``, cached on the pieces."""
    return _named(optax.chain(*txs), 'chain(' + ', '.join(describe(t) for t in txs) + ')')


@functools.cache
def add_penalty_gradient(penalty, weight: float) -> optax.GradientTransformation:
    """``updates + weight * grad(penalty.value)(params)`` leaf by leaf: adds a loss term on the params
    themselves (a :class:`jaxvis.penalties.Penalty`), like ``optax.add_decayed_weights``. Put it first in a
    chain, where the updates are still the loss's gradient. Stateless; needs ``params``."""
    grad = jax.grad(penalty.value)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError('add_penalty_gradient needs the params')
        return jax.tree_util.tree_map(lambda u, p: u + weight * grad(p), updates, params), state

    return _named(optax.GradientTransformation(lambda params: optax.EmptyState(), update),
                  f'add_penalty_gradient({penalty.name}, {weight})')


class RMSPropState(NamedTuple):
    cache: optax.Updates


@functools.cache
def keras_vis_rmsprop(decay: float = 0.95) -> optax.GradientTransformation:
    """keras-vis 0.4.1's ``Optimizer._rmsprop`` with its learning rate 1: ``cache = decay * cache +
    (1 - decay) * g^2`` (from zeros), update ``-g / sqrt(cache + 1e-7)`` (``K.epsilon()``). No bias
    correction, so the first update is ``-g / sqrt(0.05 g^2)``, about 4.5 units a value."""
    def init(params):
        return RMSPropState(jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        cache = jax.tree_util.tree_map(lambda c, g: decay * c + (1.0 - decay) * g * g, state.cache, updates)
        return jax.tree_util.tree_map(lambda g, c: -g / jnp.sqrt(c + EPS), updates, cache), RMSPropState(cache)

    return _named(optax.GradientTransformation(init, update), f'keras_vis_rmsprop(decay={decay})')
