"""The filter-visualization engine: many filters optimized in parallel by one pure jitted step.

Each filter's image is a function of (key, layer, filter index, config) alone: its key is
``fold_in(fold_in(key, crc32(layer)), filter)``, so it does not depend on which other filters share its
batch, nor on the batch size (up to float rounding: see the README). The steps run as a Python loop
over one jitted, ``vmap``-ed step (measured faster than ``lax.fori_loop`` on XLA:CPU), in chunks of
filters (:mod:`jaxvis.schedule`, which can also drop dead filters early). On CPU the step is compiled
with the options and convolution algorithms of :mod:`jaxvis.tuning` (docs/performance.md).
"""
from __future__ import annotations

import functools
import zlib
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import objectives, render, schedule, sharding, tuning
from jaxvis.config import FilterConfig, preset
from jaxvis.errors import JaxvisError
from jaxvis.models import ModelSpec, get_model



class FilterResult(NamedTuple):
    """What :func:`visualize_filters` returns (numpy arrays on the host).

    images:    [N, H, W, 3] float32, RGB nominally 0..255 (the optimized inputs, de-processed, not clipped)
    losses:    [N] float32, the objective of each final image
    history:   [steps, N] float32, the objective at each step, before that step's update
    dead:      [N] bool, final objective <= 0 (its gradient is 0: the image cannot move; seed 003 drops these)
    filters:   [N] int, the filter indices, in the order asked
    snapshots: [S, N, H, W, 3] float32 RGB at ``snapshot_steps`` (start, every k steps, end), or None
    snapshot_steps: tuple of the S step counts
    config:    the FilterConfig used
    """

    images: np.ndarray
    losses: np.ndarray
    history: np.ndarray
    dead: np.ndarray
    filters: np.ndarray
    snapshots: np.ndarray | None
    snapshot_steps: tuple[int, ...]
    config: FilterConfig


def layer_id(layer: str) -> int:
    """A stable 31-bit id of a layer name (crc32), folded into keys."""
    return zlib.crc32(layer.encode()) & 0x7FFFFFFF


def filter_keys(key: jax.Array, layer: str, filters: jax.Array) -> jax.Array:
    """``[N]`` keys, one per filter: ``fold_in(fold_in(key, layer_id(layer)), f)``."""
    base = jax.random.fold_in(key, layer_id(layer))
    return jax.vmap(lambda f: jax.random.fold_in(base, f))(jnp.asarray(filters, jnp.uint32))


def init_image(cfg: FilterConfig, key: jax.Array, size: int) -> jax.Array:
    """One start image ``[size, size, 3]`` in model-input space from a filter's key (or, with
    ``cfg.param``, the param's start point, see :func:`jaxvis.render.init_params`)."""
    if cfg.param is not None:
        return render.init_params(cfg, key, size)
    k = jax.random.fold_in(key, 0)
    if cfg.init_dist == 'normal':
        noise = jax.random.normal(k, (size, size, 3), jnp.float32)
    else:
        noise = jax.random.uniform(k, (size, size, 3), jnp.float32)
    return cfg.init_offset + cfg.init_scale * noise


def make_step(spec: ModelSpec, layer: str, cfg: FilterConfig, objective=None, *, size: int | None = None,
              batch: int = 1) -> Callable:
    """The pure per-image step ``(params, x, opt_state, f, key, t) -> (x, opt_state, loss)``.

    x: [H, W, 3] float32 model-input space (or, with ``cfg.param``, the param's pytree); f: [] int filter;
    key: the filter's key; t: [] int step. ``loss`` is the objective before the update. The update order
    is :class:`jaxvis.config.FilterConfig`'s; the body is :func:`jaxvis.render.make_param_step`, which
    serves pixels and parameterizations alike. ``size`` and ``batch`` (images per device per call) pick
    the convolution algorithms (``cfg.conv``, :func:`jaxvis.tuning.conv_plan`). Not jitted or vmapped:
    see :func:`batched_step`.
    """
    return render.make_param_step(spec, layer, cfg, objective, size=size, batch=batch)


def make_score(spec: ModelSpec, layer: str, objective=None) -> Callable:
    """``(params, x [H,W,3], f []) -> objective`` for one image, without transforms."""
    module = spec.make(layer)
    objective = objective or objectives.channel_mean(layer)
    return lambda params, x, f: objective(module.apply({'params': params}, x[None]), f)


def batched_step(step: Callable, mesh=None) -> Callable:
    """``jit(vmap(step))`` over images, optimizer states, filters and keys (params and t shared).

    With a ``mesh`` (:func:`jaxvis.sharding.filter_mesh`) the batch is split over its devices.
    """
    return sharding.shard_batched(step, (None, 0, 0, 0, 0, None), mesh)


def needed_params(spec: ModelSpec, params: dict, layer: str) -> dict:
    """The subset of ``params`` for layers up to ``layer`` (nothing deeper is sent to the device)."""
    names = spec.layer_names[:spec.layer_names.index(layer) + 1]
    missing = [n for n in names if n in spec.conv_layers and n not in params]
    if missing:
        raise JaxvisError(f'params lack layer {missing[0]!r} needed for {layer}')
    return {n: params[n] for n in names if n in params}


def parse_filters(filters, n_channels: int, layer: str) -> np.ndarray:
    """Filter indices from an int, a sequence, a ``range``/``slice``, or 'all'; checked against the layer."""
    if isinstance(filters, str) and filters == 'all':
        idx = np.arange(n_channels)
    elif isinstance(filters, slice):
        idx = np.arange(n_channels)[filters]
    else:
        idx = np.atleast_1d(np.asarray(list(filters) if isinstance(filters, range) else filters))
    if idx.size == 0:
        raise JaxvisError('no filters selected')
    if not np.issubdtype(idx.dtype, np.integer):
        raise JaxvisError(f'filter indices must be integers, got {idx.dtype}')
    bad = idx[(idx < 0) | (idx >= n_channels)]
    if bad.size:
        raise JaxvisError(f'filter {int(bad[0])} is out of range: {layer} has {n_channels} filters (0..{n_channels - 1})')
    return idx.astype(np.int64)


def visualize_filters(params, layer: str, filters, *, model: str | ModelSpec = 'vgg16', size: int = 128,
                      steps: int | None = None, preset: str = 'seed', key: jax.Array | None = None,
                      init=None, batch_size: int | None = None, snapshot_every: int | None = None,
                      config: FilterConfig | None = None, progress: Callable[[int], None] | None = None,
                      devices=None, drop_dead: bool = False, **overrides) -> FilterResult:
    """Find, for each filter, the input that maximizes its mean activation, by gradient ascent.

    Args:
      params: ``{layer: {'kernel', 'bias'}}`` (e.g. from :func:`jaxvis.load_keras_h5`).
      layer: layer name, e.g. 'block5_conv1'.
      filters: indices (int, sequence, range, slice or 'all').
      model: registry name or ModelSpec. size: image side in pixels.
      steps: overrides the preset's step count. preset: see :data:`jaxvis.config.PRESETS`.
      key: ``jax.random`` key; None means ``jax.random.key(0)``.
      init: start images, RGB 0..255, ``[H, W, 3]`` (shared) or ``[N, H, W, 3]``; None: the preset's noise.
      batch_size: filters per compiled batch (memory bound); None: all at once up to 32. A last partial
        chunk is padded only to a multiple of 8 (per device).
      snapshot_every: also return the images every k steps (to watch the filters form).
      config: a full FilterConfig (then ``preset``/``overrides`` are ignored).
      progress: called with the number of filter-steps just done, after every step (no printing here).
      devices: None or 'all' (every local device) or a list of jax devices: each batch is split over them
        along the filter axis and padded to a multiple of their number (see :mod:`jaxvis.sharding`).
      drop_dead: after the first step, optimize only the live filters (see :mod:`jaxvis.schedule`): the
        dead ones (objective and gradient exactly 0) get exactly the result all steps would give. Needs a
        config whose step cannot move such an image (:func:`jaxvis.schedule.can_drop_dead`).
      **overrides: FilterConfig fields replacing the preset's (decay=..., jitter=..., optimizer=...).

    Returns:
      FilterResult (shapes in its docstring).

    Raises:
      JaxvisError: unknown layer or preset, filter index out of range, size too small for the layer,
        drop_dead with a config that can move a zero-gradient image.
    """
    spec = get_model(model)
    n_channels = spec.channels(layer)
    spec.check_size(layer, size)
    idx = parse_filters(filters, n_channels, layer)
    if config is None:
        config = _preset(preset, **({'steps': steps} if steps is not None else {}), **overrides)
    elif steps is not None:
        raise JaxvisError('pass steps inside config, not both')
    cfg = config
    key = jax.random.key(0) if key is None else key
    mesh = sharding.filter_mesh(devices)
    p = sharding.replicate(needed_params(spec, params, layer), mesh)
    n = len(idx)
    if batch_size is not None and batch_size < 1:
        raise JaxvisError(f'batch_size must be >= 1, got {batch_size}')
    bs = sharding.padded_size(min(n, batch_size or 32), mesh)

    start = None
    if init is not None:
        start = np.asarray(init, np.float32)
        if start.ndim == 3:
            start = np.broadcast_to(start, (n,) + start.shape)
        if start.shape != (n, size, size, 3):
            raise JaxvisError(f'init must be [{size}, {size}, 3] or [{n}, {size}, {size}, 3], got {list(np.shape(init))}')
        start = np.asarray(spec.preprocess(start))

    if drop_dead and not schedule.can_drop_dead(cfg):
        raise JaxvisError('drop_dead needs a step that cannot move a zero-gradient image: plain ascent on pixels '
                          'with no jitter, transform, regularizer, optimizer or redirected ReLU')
    to_x, from_x = render.input_maps(spec, cfg)  # param <-> model input; identities for pixels
    step, score, make_init, opt_init = _compiled(spec, layer, cfg, mesh, size, bs)
    snap_steps = _snapshot_steps(cfg.steps, snapshot_every)

    def begin(pos, x=None):
        chunk = idx[pos]
        f = sharding.shard(jnp.asarray(chunk, jnp.int32), mesh)
        keys = sharding.shard(filter_keys(key, layer, chunk), mesh)
        if x is None:
            x = make_init(keys) if start is None else from_x(jnp.asarray(start[pos]))
        x = sharding.shard(jax.tree_util.tree_map(jnp.asarray, x), mesh)
        return x, opt_init(x), f, keys

    out = schedule.run(begin, lambda *a: step(p, *a), lambda x, f: score(p, x, f), to_x, n, bs, cfg.steps,
                       snap_steps, progress, drop_dead, round_to=8 * (1 if mesh is None else mesh.size))
    losses = out.losses.astype(np.float32)
    return FilterResult(
        images=np.asarray(spec.deprocess(out.x)).astype(np.float32),
        losses=losses,
        history=out.history.astype(np.float32),
        dead=losses <= 0,
        filters=idx,
        snapshots=None if out.snapshots is None else np.asarray(spec.deprocess(out.snapshots)),
        snapshot_steps=tuple(sorted(snap_steps)),
        config=cfg,
    )


_preset = preset  # the argument named `preset` shadows the function inside visualize_filters


def _compile(spec: ModelSpec, layer: str, cfg: FilterConfig, mesh, size: int, bs: int):
    """The jitted step, scorer, start-image maker and optimizer init for one configuration."""
    objective = cfg.objective(layer) if cfg.objective is not None else None
    per_device = bs // (1 if mesh is None else mesh.size)
    step = batched_step(make_step(spec, layer, cfg, objective, size=size, batch=per_device), mesh)
    score = jax.jit(jax.vmap(make_score(spec, layer, objective), in_axes=(None, 0, 0)),
                    compiler_options=tuning.compiler_options())
    make_init = jax.jit(jax.vmap(lambda k: init_image(cfg, k, size)))
    opt_init = jax.jit(jax.vmap(cfg.optimizer.init)) if cfg.optimizer is not None else (lambda x: ())
    return step, score, make_init, opt_init


_compile_cached = functools.lru_cache(maxsize=8)(_compile)


def _compiled(spec, layer, cfg, mesh, size, bs):
    """:func:`_compile`, reused across calls with an equal configuration (no recompiling per call).

    Configurations holding unhashable objects are compiled afresh each call.
    """
    try:
        return _compile_cached(spec, layer, cfg, mesh, size, bs)
    except TypeError:
        return _compile(spec, layer, cfg, mesh, size, bs)


def _snapshot_steps(steps: int, every: int | None) -> set[int]:
    if not every:
        return set()
    if every < 1:
        raise JaxvisError(f'snapshot_every must be >= 1, got {every}')
    return set(range(0, steps, every)) | {steps}


def best_order(result: FilterResult, n: int | None = None) -> np.ndarray:
    """Positions into ``result`` of the best ``n`` live filters by final objective, best first."""
    live = np.flatnonzero(~result.dead)
    order = live[np.argsort(-result.losses[live], kind='stable')]
    return order if n is None else order[:n]


def filters_of(result: FilterResult, order: Sequence[int]) -> list[int]:
    return [int(result.filters[i]) for i in order]
