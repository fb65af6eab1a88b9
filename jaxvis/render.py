"""The parameterized render step (Lucid-style), the redirected-ReLU gradient, and diverse batches.

:func:`make_param_step` is the step :func:`jaxvis.filters.make_step` runs: the seeds' pixel ascent, and
whatever a :class:`~jaxvis.config.FilterConfig` asks for beyond it: a ``param`` (optimize Fourier
coefficients, say, instead of pixels), a ``transform`` in ``[0, 1]`` RGB, or the redirected ReLU gradient. The engine's loop, chunking and per-filter keys stay the same. Per image::

    rgb = param.to_image(p)                      # [H, W, 3] in [0, 1]   (pixels: deprocess(p) / 255)
    x = spec.preprocess(255 * transform(k, rgb))  # model input
    loss, g = value_and_grad(objective)(p)        # objective to maximize
    p = p + optimizer update of -g                # any optax transformation, or plain ascent

:func:`visualize_diverse` optimizes ``n`` images of *one* filter jointly, with a diversity term over
the batch (Olah et al., "Feature Visualization", Distill 2017, section "Diversity").
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis import metrics, objectives, tuning
from jaxvis.config import FilterConfig, preset as get_preset
from jaxvis.errors import JaxvisError
from jaxvis.models import ModelSpec, get_model

EPS = 1e-7


# ---------------------------------------------------------------- redirected ReLU gradient

@jax.custom_vjp
def redirected_relu(x: jax.Array, active: jax.Array) -> jax.Array:
    """``relu(x)`` whose gradient, while ``active`` (a 0-d float, 1.0 = on), is Lucid's redirected one.

    Forward: exactly ``jax.nn.relu``. Backward, for each batch entry (leading axis) whose ReLU gradient
    is zero everywhere (the unit never fired, so nothing would flow back), the cotangent passes through
    where it pushes the input *up* (cotangent > 0: the quantity being differentiated is maximized, as
    in jaxvis; Lucid differentiates a loss and tests ``grad < 0``), instead of being blocked. With
    ``active == 0`` or any entry that already has gradient, the gradient is ``relu``'s.
    """
    return jax.nn.relu(x)


def _rr_fwd(x, active):
    return jax.nn.relu(x), (x, active)


def _rr_bwd(res, g):
    x, active = res
    relu_g = jnp.where(x > 0, g, jnp.zeros_like(g))
    redirected = jnp.where((x <= 0) & (g < 0), jnp.zeros_like(g), g)
    blocked = jnp.sum(jnp.abs(relu_g).reshape(relu_g.shape[0], -1), axis=1) == 0
    blocked = blocked.reshape((-1,) + (1,) * (x.ndim - 1)) & (active > 0)
    return jnp.where(blocked, redirected, relu_g), jnp.zeros_like(active)


redirected_relu.defvjp(_rr_fwd, _rr_bwd)


def make_apply(spec: ModelSpec, layer: str, redirect_steps: int = 0, dtype: str = 'float32',
               conv: tuple = ()) -> Callable:
    """``(params, x [B, H, W, 3], t []) -> {layer: [B, H', W', C]}``; ReLUs redirected while ``t < redirect_steps``.

    ``dtype`` 'bfloat16' runs the convolutions in bf16 (as :func:`jaxvis.filters.make_step`); ``conv`` is a
    :func:`jaxvis.tuning.conv_plan` (only for a ``spec.tunable`` model).
    Raises JaxvisError if ``redirect_steps > 0`` and the model's ``make`` takes no ``relu=``.
    """
    kw = {} if dtype == 'float32' else {'dtype': jnp.dtype(dtype)}
    if conv:
        kw['conv'] = tuple(conv)
    if redirect_steps <= 0:
        module = spec.make(layer, **kw)
        return lambda params, x, t: module.apply({'params': params}, x)
    try:
        spec.make(layer, relu=jax.nn.relu, **kw)
    except TypeError as e:
        raise JaxvisError(f'model {spec.name!r} cannot swap its ReLU (make() takes no relu=): {e}') from None

    def apply(params, x, t):
        active = (t < redirect_steps).astype(jnp.float32)
        module = spec.make(layer, relu=lambda z: redirected_relu(z, active), **kw)
        return module.apply({'params': params}, x)
    return apply


# ---------------------------------------------------------------- params <-> model input

def to_rgb01(spec: ModelSpec, cfg: FilterConfig) -> Callable:
    """``p -> [H, W, 3]`` RGB in ``[0, 1]`` (pixels: ``deprocess(p) / 255``, not clipped)."""
    if cfg.param is not None:
        return cfg.param.to_image
    return lambda x: spec.deprocess(x) / 255.0


def to_model_input(spec: ModelSpec, cfg: FilterConfig) -> Callable:
    """``p -> [H, W, 3]`` model input, untransformed (identity for pixels)."""
    if cfg.param is None:
        return lambda x: x
    return lambda p: spec.preprocess(255.0 * cfg.param.to_image(p))


def from_model_input(spec: ModelSpec, cfg: FilterConfig) -> Callable:
    """``[H, W, 3]`` model input -> ``p`` (the inverse of :func:`to_model_input`, for start images)."""
    if cfg.param is None:
        return lambda x: x
    return lambda x: cfg.param.from_image(spec.deprocess(x) / 255.0)


def init_params(cfg: FilterConfig, key: jax.Array, size: int) -> Any:
    """One start point from a filter's key: ``cfg.param.init(fold_in(key, 0), (size, size, 3))``."""
    return cfg.param.init(jax.random.fold_in(key, 0), (size, size, 3))


def _transformed_input(spec: ModelSpec, cfg: FilterConfig) -> Callable:
    """``(p, key) -> model input`` after the config's transform (applied to ``[0, 1]`` RGB; it replaces
    ``cfg.jitter``, which only the plain pixel path applies, in model-input space)."""
    if cfg.transform is None and cfg.param is None:
        jitter = cfg.build_transform()
        return lambda x, key: jitter(key, x)
    rgb = to_rgb01(spec, cfg)
    transform = cfg.transform or (lambda key, img: img)
    return lambda p, key: spec.preprocess(255.0 * transform(key, rgb(p)))


def _tree_rms(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in leaves) / sum(x.size for x in leaves))


def _normalized(g):
    """``g / (rms(g) + 1e-7)``, the RMS over every leaf together (seed 003's normalization)."""
    rms = _tree_rms(g)
    return jax.tree_util.tree_map(lambda a: a / (rms + EPS), g)


def _ascent(cfg: FilterConfig, p, g, opt_state):
    """One update of ``p`` along the objective's gradient ``g`` (normalize, then optimizer or lr)."""
    d = _normalized(g) if cfg.normalize == 'rms' else g
    if cfg.optimizer is not None:
        updates, opt_state = cfg.optimizer.update(jax.tree_util.tree_map(jnp.negative, d), opt_state, p)
        return optax.apply_updates(p, updates), opt_state
    if cfg.lr_policy == 'progress':
        sq = sum(jnp.sum(jnp.square(a)) for a in jax.tree_util.tree_leaves(d))
        lr = jnp.minimum(cfg.max_lr, cfg.desired_progress / (sq + EPS))
    else:
        lr = cfg.step_size
    return jax.tree_util.tree_map(lambda a, b: a + lr * b, p, d), opt_state


def make_param_step(spec: ModelSpec, layer: str, cfg: FilterConfig, objective=None, *,
                    size: int | None = None, batch: int = 1) -> Callable:
    """The per-image step ``(params, p, opt_state, f, key, t) -> (p, opt_state, loss)``, as
    :func:`jaxvis.filters.make_step`, for any ``cfg.param`` / ``cfg.transform`` / redirected ReLU.

    ``p`` is the param's pytree (or ``[H, W, 3]`` model-input pixels when ``cfg.param`` is None, then the
    regularizers run after the update too); ``loss`` is the objective before the update. ``size`` (image
    side) and ``batch`` (images per device in one call) choose the convolutions by ``cfg.conv``
    (:func:`jaxvis.tuning.conv_plan`); without ``size`` every convolution is direct.
    """
    plan = (tuning.conv_plan(spec.layers, layer, size, batch, cfg.conv, cfg.dtype)
            if size is not None and spec.tunable else ())
    apply = make_apply(spec, layer, cfg.redirect_relu_steps, cfg.dtype, plan)
    objective = objective or objectives.channel_mean(layer)
    model_input = _transformed_input(spec, cfg)
    reg = cfg.build_regularizer() if cfg.param is None else None

    def loss_fn(p, params, f, key, t):
        return objective(apply(params, model_input(p, key)[None], t), f).astype(jnp.float32)

    def step(params, p, opt_state, f, key, t):
        loss, g = jax.value_and_grad(loss_fn)(p, params, f, jax.random.fold_in(key, t + 1), t)
        p, opt_state = _ascent(cfg, p, g, opt_state)
        if reg is not None:
            p = reg.apply(p, g, t)
        return p, opt_state, loss

    return step


# ---------------------------------------------------------------- diverse batches of one filter

class DiverseResult(NamedTuple):
    """What :func:`visualize_diverse` returns (numpy arrays).

    images:     [n, H, W, 3] float32 RGB 0..255, n images of one filter
    activation: [n] float32, each image's mean activation of the filter (no transforms)
    history:    [steps] float32, the total objective (filter + weight * diversity) before each update
    diversity:  float, :func:`jaxvis.metrics.gram_diversity` of the final images at ``layer``
    filter:     int;  config: the FilterConfig used;  weight: the diversity weight
    """

    images: np.ndarray
    activation: np.ndarray
    history: np.ndarray
    diversity: float
    filter: int
    config: FilterConfig
    weight: float


def visualize_diverse(params, layer: str, filter: int, *, n: int = 4, weight: float = 15.0,
                      diversity_layer: str | None = None, model: str | ModelSpec = 'vgg16', size: int = 128,
                      steps: int | None = None, preset: str = 'lucid', key: jax.Array | None = None,
                      config: FilterConfig | None = None, progress: Callable[[int], None] | None = None,
                      **overrides) -> DiverseResult:
    """``n`` different images that excite filter ``filter`` of ``layer``, optimized jointly.

    Maximizes ``objective(acts of the batch) + weight * diversity(diversity_layer)`` (see
    :func:`jaxvis.objectives.diversity`, in ``[-(n - 1), 0]``), the objective being the config's (the
    filter's channel mean by default, averaged over the batch). Image ``b`` starts from
    ``fold_in(filter_key, b)``, ``filter_key`` as in :func:`jaxvis.filters.filter_keys`.

    The weight trades activation for diversity and depends on the layer's activation scale: Lucid uses
    100 on InceptionV1; on VGG16 block4_conv1 (128 px) 100 swamps the filter (its activation falls
    from 144 to 19), 5 to 15 keep it (docs/presets.md).

    Raises:
      JaxvisError: unknown layer/preset, filter out of range, ``n < 2``, or a config without ``param``.
    """
    from jaxvis.filters import filter_keys, needed_params  # filters imports this module

    spec = get_model(model)
    n_channels = spec.channels(layer)
    spec.check_size(layer, size)
    if not 0 <= int(filter) < n_channels:
        raise JaxvisError(f'filter {filter} is out of range: {layer} has {n_channels} filters')
    if n < 2:
        raise JaxvisError(f'diversity needs n >= 2 images, got {n}')
    if config is None:
        config = get_preset(preset, **({'steps': steps} if steps is not None else {}), **overrides)
    cfg = config
    if cfg.param is None:
        raise JaxvisError('visualize_diverse needs a config with a param (e.g. preset="lucid")')
    div_layer = diversity_layer or layer
    deepest = max((layer, div_layer), key=spec.layer_names.index)
    p_model = needed_params(spec, params, deepest)
    apply = make_apply(spec, deepest, cfg.redirect_relu_steps, cfg.dtype)
    base = cfg.objective(layer) if cfg.objective is not None else objectives.channel(layer)
    total = objectives.as_objective(base) + weight * objectives.diversity(div_layer)
    transform = cfg.transform or (lambda k, img: img)
    opt = cfg.optimizer or optax.sgd(cfg.step_size)

    key = jax.random.key(0) if key is None else key
    fkey = filter_keys(key, layer, np.asarray([filter]))[0]
    img_keys = jax.vmap(lambda b: jax.random.fold_in(fkey, b))(jnp.arange(n, dtype=jnp.uint32))
    f = jnp.int32(filter)

    def loss_fn(p, params, t):
        rgb = jax.vmap(lambda q, k: transform(jax.random.fold_in(k, t + 1), cfg.param.to_image(q)))(p, img_keys)
        return total(apply(params, spec.preprocess(255.0 * rgb), t), f).astype(jnp.float32)

    @jax.jit
    def step(params, p, opt_state, t):
        loss, g = jax.value_and_grad(loss_fn)(p, params, t)
        if cfg.normalize == 'rms':
            g = _normalized(g)
        updates, opt_state = opt.update(jax.tree_util.tree_map(jnp.negative, g), opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    p = jax.vmap(lambda k: init_params(cfg, k, size))(img_keys)
    opt_state = opt.init(p)
    hist = []
    for t in range(cfg.steps):
        p, opt_state, loss = step(p_model, p, opt_state, jnp.int32(t))
        hist.append(loss)
        if progress is not None:
            loss.block_until_ready()
            progress(n)
    rgb = jax.vmap(cfg.param.to_image)(p)
    acts = jax.jit(lambda params, x: apply(params, x, jnp.int32(cfg.steps)))(p_model, spec.preprocess(255.0 * rgb))
    act = np.asarray(jnp.mean(acts[layer][..., filter], axis=(1, 2)), np.float32)
    return DiverseResult(images=np.asarray(255.0 * rgb, np.float32), activation=act,
                         history=np.asarray(jnp.stack(hist), np.float32),
                         diversity=float(metrics.gram_diversity(acts[div_layer])), filter=int(filter),
                         config=cfg, weight=float(weight))


def input_maps(spec: ModelSpec, cfg: FilterConfig) -> tuple[Callable, Callable]:
    """``(to_x, from_x)`` over a batch: params -> model input ``[N, H, W, 3]`` and back (jitted), or two
    identities when ``cfg.param`` is None (the pixels are the model input)."""
    if cfg.param is None:
        return (lambda x: x), (lambda x: x)
    return jax.jit(jax.vmap(to_model_input(spec, cfg))), jax.jit(jax.vmap(from_model_input(spec, cfg)))
