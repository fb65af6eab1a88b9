"""The filter-visualization engine: many filters optimized in parallel by one pure jitted step.

Each filter's image is a function of (key, layer, filter index, config) alone (:mod:`.start`). The
steps run as a Python loop over one jitted, ``vmap``-ed step (:mod:`.step`, :mod:`.schedule`), in
chunks of filters, spread over the local devices (:mod:`jaxvis.backend.sharding`).
"""
from __future__ import annotations

import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.backend import hosts, memory, sharding, xla
from jaxvis.errors import JaxvisError
from jaxvis.models import footprint, probe
from jaxvis.models.forward import params_up_to
from jaxvis.models.protocol import Model, get_model
from jaxvis.models.vgg import preprocess as caffe_preprocess
from jaxvis.util import ceil_div, check_int
from jaxvis.visualize import schedule, staged
from jaxvis.visualize.config import FilterConfig
from jaxvis.visualize.presets import preset
from jaxvis.visualize.result import FilterResult, best_order, empty_result, filters_of, with_rescue  # noqa: F401
from jaxvis.visualize.start import filter_keys, from_model_input, start_images, start_point, to_model_input
from jaxvis.visualize.step import batched, make_score, make_step, specialized

WIDTH = 8  # images per operation on CPU by default, whatever the job: XLA:CPU's convolutions and matmuls
# round by the batch *shape* (Eigen picks its blocking from it), never by the batch mates' values, so a
# fixed width makes every filter's image independent of the batch size, of how many filters are asked
# for and of the device count (docs/performance.md). ``width=`` picks another; the image depends on it.


def check_width(width: int | None) -> int:
    """The CPU group width: ``width``, checked (an int >= 1), or :data:`WIDTH` for None."""
    return WIDTH if width is None else check_int('width', width, low=1)


def parse_filters(filters, n_channels: int, layer: str) -> np.ndarray:
    """Filter indices from an int, a sequence, a ``range``/``slice``, or 'all'; checked against the layer."""
    if isinstance(filters, str) and filters == 'all':
        idx = np.arange(n_channels)
    elif isinstance(filters, slice):
        if filters.stop is not None and filters.stop > n_channels:
            raise JaxvisError(f'filter {filters.stop - 1} is out of range: {layer} has {n_channels} filters '
                              f'(0..{n_channels - 1})')
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


def as_config(config: FilterConfig | str) -> FilterConfig:
    """A FilterConfig, or a preset name resolved with its defaults."""
    if isinstance(config, str):
        return preset(config)
    if not isinstance(config, FilterConfig):
        raise JaxvisError(f'config must be a FilterConfig or a preset name, got {type(config).__name__}')
    return config


def check_request(model: Model, layer: str, filters, *, size: int, config: FilterConfig,
                  batch_size: int | None = None, drop_dead: bool = False, snapshot_every: int | None = None,
                  params=None, width: int | None = None) -> np.ndarray:
    """Every check of :func:`visualize_filters` that needs no compute; returns the filter indices.

    Raises JaxvisError: unknown layer, filter out of range, size too small or too big to fit in memory,
    bad batch size, width or snapshot
    interval, ``drop_dead`` with a config that can move a zero-gradient image.
    """
    check_int('size', size, low=1)
    n_channels = probe.channels(model, probe.check_layer(model, layer, params), params)
    probe.check_size(model, layer, size, params)
    idx = parse_filters(filters, n_channels, layer)
    if batch_size is not None:
        check_int('batch_size', batch_size, low=1)
    width = check_width(width)
    batch = ceil_div(batch_size or width, width) * width  # what one device holds per call
    footprint.check_fits(model, layer, (size, size), params, batch=batch,
                         what=f'size {size}, {batch} filters at once')
    if snapshot_every is not None:
        check_int('snapshot_every', snapshot_every, low=1)
    if drop_dead and not schedule.can_drop_dead(config):
        raise JaxvisError('drop_dead needs a step that cannot move a zero-gradient image: plain ascent on pixels '
                          'with no jitter, transform, regularizer, optimizer or redirected ReLU')
    return idx


def visualize_filters(params, layer: str, filters, config: FilterConfig | str = 'seed', *,
                      model: str | Model = 'vgg16', size: int = 128, key: jax.Array | None = None,
                      init=None, batch_size: int | None = None, snapshot_every: int | None = None,
                      progress: Callable[[int], None] | None = None, devices=None,
                      drop_dead: bool = False, split_processes: bool = True,
                      width: int | None = None) -> FilterResult:
    """Find, for each filter, the input that maximizes its objective, by gradient ascent.

    Args:
      params: the model's params (``{layer: {'kernel', 'bias'}}`` from :func:`jaxvis.load_keras_h5` for
        VGG), or None for a model that carries its own (:func:`jaxvis.models.from_flax`).
      layer: layer name, e.g. 'block5_conv1'.
      filters: indices (int, sequence, range, slice or 'all').
      config: a :class:`FilterConfig` or a preset name (:data:`jaxvis.PRESETS`; ``jaxvis.preset(name,
        steps=..., decay=...)`` for options).
      model: registry name or :class:`~jaxvis.models.Model`. size: image side in pixels.
      key: ``jax.random`` key; None means ``jax.random.key(0)``.
      init: start images, RGB 0..255, ``[H, W, 3]`` (shared) or ``[N, H, W, 3]``; None: the config's start.
      batch_size: filters per device in each compiled call (memory bound), rounded up to a multiple of
        ``width`` (8 on an accelerator), and no more than the job needs; None: ``width`` on CPU, on an
        accelerator what a quarter of its free memory holds (:func:`jaxvis.backend.memory.accelerator_batch`).
        On CPU every operation sees groups of exactly ``width`` images per device (short chunks padded):
        an image is the same bytes whatever the batch or devices.
      snapshot_every: also return the images every k steps (to watch the filters form).
      progress: called with the number of filter-steps just done, after every step (no printing here).
      devices: None or 'all' (every local device) or a list of jax devices: each batch is split over them
        along the filter axis and padded to a multiple of their number (see :mod:`jaxvis.backend.sharding`).
      drop_dead: after the first step, optimize only the live filters (see :mod:`.schedule`): the dead
        ones (objective and gradient exactly 0) get exactly the result all steps would give. Needs a
        config whose step cannot move such an image (:func:`.schedule.can_drop_dead`).
      split_processes: in a multi-process program (after ``jax.distributed.initialize``), compute only this
        process's block of the filters (:func:`jaxvis.backend.hosts.my_share`, in proportion to each
        process's devices) and return those: ``result.filters`` says which (possibly none). Each image is
        the same bytes as in a single-process run. False: every filter asked, on this process's devices.
      width: images per operation on CPU (None: :data:`WIDTH`, 8). A filter's image depends on it (the
        rounding of the convolutions does), never on the batch; a job of fewer filters than ``width``
        computes padding, so 4 halves a job of 1-4 filters and costs the same per filter on larger
        ones (measured on a 2-core AMD EPYC, docs/performance.md). Accelerators ignore it (one
        operation per batch).

    Returns:
      FilterResult (shapes in its docstring).

    Raises:
      JaxvisError: see :func:`check_request`; a bad ``init`` shape.
    """
    model = get_model(model)
    cfg = as_config(config)
    idx = check_request(model, layer, filters, size=size, config=cfg, batch_size=batch_size, drop_dead=drop_dead,
                        snapshot_every=snapshot_every, params=params, width=width)
    w = check_width(width)
    key = jax.random.key(0) if key is None else key
    start = start_images(model, init, len(idx), size)
    mine = hosts.my_share(len(idx)) if split_processes else slice(None)
    idx, start = idx[mine], None if start is None else start[mine]
    if not len(idx):  # more processes than filters: nothing here
        return empty_result(cfg, size, snapshot_steps(cfg.steps, snapshot_every))
    mesh = sharding.filter_mesh(devices)
    n = len(idx)
    group = w if sharding.platform(mesh) == 'cpu' else None  # accelerators: one operation per batch
    n_devices = 1 if mesh is None else mesh.size
    stage = os.environ.get('JAXVIS_STAGED', '') != '0'  # read per call: the compiled steps are cached
    unit = (group or WIDTH) * n_devices
    per_device = batch_size or (group or memory.accelerator_batch(
        footprint.activation_bytes(model, layer, (size, size), params), WIDTH))
    bs = ceil_div(per_device * n_devices, unit) * unit
    bs = min(bs, ceil_div(n, unit) * unit)  # no call wider than the job: an image does not depend on it

    try:
        compiled = _compiled(model, layer, cfg, mesh, size, bs, group, stage)
    except TypeError:  # a config holding an unhashable piece: compiled afresh each call
        compiled = _compiled.__wrapped__(model, layer, cfg, mesh, size, bs, group, stage)
    step, score, make_init, opt_init, to_x, from_x, prepare = compiled
    plain = params_up_to(model, params, layer)
    p = sharding.replicate(plain, mesh)
    p_step = p if prepare is None else sharding.replicate(jax.tree_util.tree_map(jnp.asarray, prepare(plain)), mesh)
    snap_steps = snapshot_steps(cfg.steps, snapshot_every)

    def begin(pos, x=None):
        chunk = idx[pos]
        f = sharding.shard(jnp.asarray(chunk, jnp.int32), mesh)
        keys = sharding.shard(filter_keys(key, layer, chunk), mesh)
        if x is None:
            x = make_init(keys) if start is None else from_x(jnp.asarray(start[pos]))
        else:  # the model input to resume from (drop_dead): back to the param
            x = from_x(jnp.asarray(x))
        x = sharding.shard(jax.tree_util.tree_map(jnp.asarray, x), mesh)
        return x, opt_init(x), f, keys

    out = schedule.run(begin, lambda *a: step(p_step, *a), lambda x, f: score(p, x[..., :3], f), to_x, n, bs, cfg.steps,
                       snap_steps, progress, drop_dead)
    losses = out.losses.astype(np.float32)
    alpha = None if cfg.param.accumulate is None else out.x[..., 3].astype(np.float32)
    first = FilterResult(
        images=np.asarray(model.deprocess(out.x[..., :3])).astype(np.float32),
        losses=losses,
        history=out.history.astype(np.float32),
        dead=schedule.dead_mask(losses, out.history, spatial=probe.spatial(model, layer, size, params) is not None),
        filters=idx,
        snapshots=None if out.snapshots is None else np.asarray(model.deprocess(out.snapshots[..., :3])),
        snapshot_steps=tuple(sorted(snap_steps)),
        config=cfg,
        alpha=alpha,
    )
    if cfg.rescue is None:
        return first
    pos = np.flatnonzero(first.dead)
    if not len(pos):
        return with_rescue(first, None, pos)
    rows = init if init is None or np.ndim(init) == 3 else np.asarray(init)[mine][pos]
    second = visualize_filters(params, layer, first.filters[pos], cfg.rescue, model=model, size=size, key=key,
                               init=rows, batch_size=batch_size, snapshot_every=snapshot_every, progress=progress,
                               devices=devices, split_processes=False, width=width)
    return with_rescue(first, second, pos)


@functools.lru_cache(maxsize=16)
def _compiled(model: Model, layer: str, cfg: FilterConfig, mesh, size: int, bs: int, width: int | None,
              stage: bool = True):
    """The jitted step, scorer, start maker, optimizer init, input maps and the step's params' ``prepare``
    for one configuration, reused by every call with an equal one (configs from presets compare equal).
    ``stage``: whether the step may be staged (:func:`jaxvis.visualize.staged.cut_point`)."""
    objective = cfg.objective(layer)
    cut = staged.cut_point(model, layer, cfg, size, width, stage)
    if cut is None:
        model_k = specialized(model, layer, cfg, size, width or bs)  # one plan for the step and its params
        one = batched(make_step(model, layer, cfg, objective, size=size, batch=width or bs, runs=model_k), mesh, width,
                      cfg.dtype)

        def step(params, x, opt_state, f, keys, t, real):  # one program: the padding slots run too
            return one(params, x, opt_state, f, keys, t)
        prepare = model_k.prepare   # run as it is: Winograd's kernel transforms are numpy (nothing to compile)
    else:  # CPU: the stem one image per call, the rest in groups
        step, prepare = staged.staged_step(model, layer, cfg, objective, cut=cut, size=size, mesh=mesh, width=width)
    score = xla.jit(jax.vmap(make_score(model, layer, objective), in_axes=(None, 0, 0)))
    make_init = jax.jit(jax.vmap(lambda k: start_point(cfg, k, size)))
    opt_init = jax.jit(jax.vmap(cfg.optimizer.init))
    if cfg.param.space == 'input' and model.preprocess is caffe_preprocess:
        to_x = from_x = lambda x: x  # the seeds' pixels are VGG's input itself
    else:
        to_x, from_x = jax.jit(jax.vmap(to_model_input(model, cfg))), jax.jit(jax.vmap(from_model_input(model, cfg)))
    if cfg.param.accumulate is not None:  # the accumulated image gradient rides along as a 4th channel
        to_input = to_model_input(model, cfg)
        to_x = jax.jit(jax.vmap(lambda q: jnp.concatenate([to_input(q), jnp.sum(q.alpha, -1, keepdims=True)], -1)))
    return step, score, make_init, opt_init, to_x, from_x, prepare


def snapshot_steps(steps: int, every: int | None) -> set[int]:
    """Steps 0, every, 2 * every, ... and ``steps`` itself (an empty set for None)."""
    if not every:
        return set()
    return set(range(0, steps, every)) | {steps}
