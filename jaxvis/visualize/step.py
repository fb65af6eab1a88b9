"""The one pure optimization step, for one image of a filter or a group of images optimized together.

``step(params, p, opt_state, f, key, t) -> (p, opt_state, loss)``: ``loss`` is the objective before the
update, the update is :class:`~jaxvis.visualize.config.FilterConfig`'s. The filter engine ``vmap``s the
single-image step over filters (:func:`batched`); :func:`jaxvis.visualize.diverse.visualize_diverse`
runs the group step, whose objective sees the whole group (a diversity term).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxvis import regularizers as R
from jaxvis.backend import sharding
from jaxvis.models.forward import forward
from jaxvis.models.protocol import Model
from jaxvis.visualize.config import FilterConfig
from jaxvis.visualize.start import image_input, restart_point


def specialized(model: Model, layer: str, cfg: FilterConfig, size: int | None, batch: int,
                after: str | None = None, whole: bool = False) -> Model:
    """The model the step runs: ``model.specialize(size=, batch=, dtype=, upto=layer)`` when there is a
    ``size`` and the model has that hook, else ``model``. Its ``prepare`` (if any) gives the step's params.
    ``after``: only the layers after it are run (a staged step's rest), and only they are planned;
    ``whole``: the layers are planned as one chain (a staged step's stem)."""
    if size is not None and model.specialize is not None:
        extra = {} if after is None else {'after': after}
        extra.update({'whole': True} if whole else {})
        return model.specialize(size=size, batch=batch, dtype=cfg.dtype, upto=layer, **extra)
    return model


def make_step(model: Model, layer: str, cfg: FilterConfig, objective=None, *, size: int | None = None,
              batch: int = 1, group: bool = False, runs: Model | None = None) -> Callable:
    """The pure step (not jitted).

    Args:
      model: the network; with ``size``, ``model.specialize(size=, batch=, dtype=, upto=layer)`` picks
        its kernels for that input (VGG's Winograd plan), ``batch`` being the images per device per call
        (:func:`specialized`, or ``runs`` when given: the caller's result of it); the step's ``params``
        may be that model's ``prepare(params)``.
      objective: an Objective (default ``cfg.objective(layer)``).
      group: ``p`` and ``key`` have a leading axis of images that the objective sees together;
        otherwise ``p`` is one image (``[H, W, 3]`` pixels or the param's pytree) and ``key`` its key.

    In the step, ``f`` is the filter (an int array), ``t`` the 0-based step (an int32 scalar).
    """
    fwd = forward(runs or specialized(model, layer, cfg, size, batch), layer, dtype=cfg.dtype, redirect=cfg.redirect)
    objective = objective or cfg.objective(layer)
    model_input = image_input(model, cfg)
    to_image = jax.vmap(cfg.param.to_image) if group else cfg.param.to_image
    accumulate = cfg.param.accumulate

    def loss_of_image(img, params, f, key, t):
        active = (t < cfg.redirect_relu_steps).astype(jnp.float32) if cfg.redirect else None
        if group:
            x = jax.vmap(lambda q, k: model_input(q, jax.random.fold_in(k, t + 1)))(img, key)
            x = x.reshape((-1,) + x.shape[-3:])  # views of every image (a multi-view transform)
        else:
            x = model_input(img, jax.random.fold_in(key, t + 1))
            x = x[None] if x.ndim == 3 else x   # one image, or the transform's [K, H, W, 3] views
        return objective(fwd(params, x, active), f).astype(jnp.float32)

    def value_and_grads(p, params, f, key, t):
        """(loss, d loss / d p, d loss / d image or None): one backward pass either way."""
        if accumulate is None:
            loss, g = jax.value_and_grad(lambda q: loss_of_image(to_image(q), params, f, key, t))(p)
            return loss, g, None
        img, pull = jax.vjp(to_image, p)
        loss, g_img = jax.value_and_grad(loss_of_image)(img, params, f, key, t)
        return loss, pull(g_img)[0], g_img

    def step(params, p, opt_state, f, key, t):
        loss, g, g_img = value_and_grads(p, params, f, key, t)
        p, opt_state = update(cfg, p, opt_state, g, g_img, key, t, group=group)
        return p, opt_state, loss

    return step


def update(cfg: FilterConfig, p, opt_state, g, g_img, key, t, *, group: bool = False):
    """The ascent's update from the objective's gradient ``g`` (d loss / d p) and ``g_img`` (d loss / d
    image, None unless the param accumulates it): the optimizer, the regularizer, the accumulation, the
    dead-filter restart. Returns ``(p, opt_state)``."""
    reg = None if cfg.regularizer is R.identity() else cfg.regularizer
    with jax.numpy_dtype_promotion('standard'):  # optax's own code relies on it (adam: float ** int32)
        updates, opt_state = cfg.optimizer.update(jax.tree_util.tree_map(jnp.negative, g), opt_state, p)
    p = optax.apply_updates(p, updates)
    if reg is not None:
        p = jax.vmap(reg.apply, in_axes=(0, 0, None))(p, g, t) if group else reg.apply(p, g, t)
    if cfg.param.accumulate is not None:
        p = jax.vmap(cfg.param.accumulate)(p, g_img) if group else cfg.param.accumulate(p, g_img)
    if cfg.restarts and not group:
        # stuck where the gradient is exactly 0: a dead ReLU filter whose gradient the redirect does not
        # carry, a logit that cannot move (whatever its sign); a dead filter that the redirected ReLU
        # is raising keeps its progress
        p, opt_state = restart_dead(cfg, p, opt_state, no_gradient(g), key, t)
    return p, opt_state


def no_gradient(g) -> jax.Array:
    """True where every entry of the gradient pytree ``g`` is exactly 0 (the objective cannot move)."""
    return jnp.all(jnp.stack([jnp.all(leaf == 0) for leaf in jax.tree_util.tree_leaves(g)]))


def restart_dead(cfg: FilterConfig, p, opt_state, dead, key, t):
    """The restart rule for one filter: at a step in ``cfg.restarts``, if it is dead (``dead``, a bool
    scalar; the step passes :func:`no_gradient`), ``p`` becomes
    :func:`~jaxvis.visualize.start.restart_point` of the filter's ``key`` and the optimizer state is
    ``cfg.optimizer.init`` of it; otherwise both are unchanged. Elementwise selects only, so a filter
    gets the same bytes alone as in a ``vmap``-ed batch."""
    shape = jax.eval_shape(cfg.param.to_image, p).shape
    hit = dead & jnp.isin(t, jnp.asarray(cfg.restarts, jnp.int32))
    fresh = restart_point(cfg, key, t, shape)
    pick = lambda new, old: jnp.where(hit, new, old)
    return (jax.tree_util.tree_map(pick, fresh, p),
            jax.tree_util.tree_map(pick, cfg.optimizer.init(fresh), opt_state))


def make_score(model: Model, layer: str, objective) -> Callable:
    """``(params, x [H, W, 3] model input, f) -> objective`` for one image, no transform, float32."""
    fwd = forward(model, layer)
    return lambda params, x, f: objective(fwd(params, x[None]), f)


def batched(step: Callable, mesh=None, width: int | None = None, dtype: str = 'float32') -> Callable:
    """``jit(vmap(step))`` over images, optimizer states, filters and keys (params and t shared).

    With a ``mesh`` (:func:`jaxvis.backend.sharding.filter_mesh`) the batch is split over its devices;
    with ``width``, each device's share runs in groups of that many (:func:`~jaxvis.backend.sharding.in_groups`);
    ``dtype``, the network's precision, picks the compiler options (:func:`jaxvis.backend.xla.compiler_options`).
    """
    return sharding.shard_batched(step, (None, 0, 0, 0, 0, None), mesh, width, dtype)
