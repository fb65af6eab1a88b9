"""The filter step in stages on CPU: the network's stem one image per call, the rest in groups.

At a group of 8 images the activations of VGG16's blocks 1-2 (64-128 channels at 128 and 64 px: 33 MB
per tensor) do not fit a 32 MB L3, so every convolution, ReLU, pooling and Winograd transform there
streams through DRAM. One image's working set does fit; computed one image per XLA call, the same
layers run 1.1-1.8x faster (docs/performance.md). Inside one XLA program the scheduler does not keep
to that order (an unrolled or ``lax.map``-ped stem was no faster), hence separate calls:

1. the head, per filter: param -> image -> transform -> model input ``x`` (groups of ``width``);
2. the stem forward, one image per call (``jax.vjp``, its pullback kept);
3. the rest of the network on each group of ``width`` as one batch, the objective per filter: the loss and
   ``d loss / d h`` (:func:`tail_of_group`);
4. the stem's pullbacks, one image per call: ``d loss / d x``;
5. the head's pullback (the head recomputed) and the update (:func:`jaxvis.visualize.step.update`).

Each stage sees a fixed shape (one image, or a group of ``width``), so a filter's image still does not
depend on the batch size or the device count. The step keeps the signature of the batched step,
``step((stem params, rest params), p, opt_state, f, keys, t, real) -> (p, opt_state, loss)``, and is
not a jitted function itself (its stages are). ``real``: the slots from it on are padding (schedule's
chunks repeat the last filter), so the stem runs only for the first ``real`` and the padding gets copies
of the last one's activation and input gradient; no real slot changes (values of batch mates never
round a filter differently), a chunk of 4 filters at width 8 costs 4 stem images, not 8.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxvis.backend import sharding
from jaxvis.backend import xla
from jaxvis.models.forward import forward
from jaxvis.models.protocol import Model
from jaxvis.visualize.config import FilterConfig
from jaxvis.visualize.start import image_input, start_point
from jaxvis.visualize.step import specialized, update


def cut_point(model: Model, layer: str, cfg: FilterConfig, size: int | None, width: int | None,
              enabled: bool = True) -> str | None:
    """The layer after which the step is cut (the model's ``stem``), or None for an unstaged step: not
    on CPU (``width`` None), no ``stem``/``resume``/``prune`` hook or no stem for this layer and size,
    several views per image, bfloat16 (the cut would store ``h`` in bf16 where one program keeps f32),
    an objective whose value depends on a stem layer (read by name or by iterating ``acts.values()``:
    :func:`reads_stem`) or that fails without the stem's layers, or ``enabled`` False (the engine passes
    ``JAXVIS_STAGED != '0'``)."""
    if (not enabled or width is None or size is None or None in (model.stem, model.resume, model.prune)
            or cfg.dtype != 'float32'):
        return None
    cut = model.stem(size, layer)
    if cut is None:
        return None
    key = jax.random.key(0)
    p = jax.eval_shape(lambda k: start_point(cfg, k, size), key)
    x = jax.eval_shape(lambda q: image_input(model, cfg)(cfg.param.to_image(q), key), p)
    if x.ndim != 3:
        return None
    rest = forward(model, layer, after=cut)
    stem_acts = jax.eval_shape(lambda q: forward(model, cut)(model.init(key), q[None]), x)
    objective = cfg.objective(layer)

    def rest_and_objective(a):
        acts = rest(model.init(key), a)
        objective(acts, jnp.int32(0))  # traced: does it evaluate without the stem's layers?
        return acts
    try:
        rest_acts = jax.eval_shape(rest_and_objective, stem_acts[cut])
    except Exception:  # noqa: BLE001 - an objective that needs a stem layer: the one-program step
        return None
    return None if reads_stem(objective, stem_acts, rest_acts) else cut


def reads_stem(objective, stem_acts: dict, rest_acts: dict) -> bool:
    """Whether ``objective(acts, f)``'s value depends on a layer of ``stem_acts`` when it is given the
    one-program step's activations (``stem_acts`` and ``rest_acts`` together, ``{layer: ShapeDtypeStruct}``):
    its jaxpr reads that layer's input. Traced only, never run."""
    acts = {**stem_acts, **rest_acts}
    names = list(acts)
    jaxpr = jax.make_jaxpr(lambda *a: objective(dict(zip(names, a)), jnp.int32(0)))(*acts.values()).jaxpr
    read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    return any(id(v) in read for name, v in zip(names, jaxpr.invars) if name in stem_acts)


def split_params(model: Model, cut: str, params):
    """``(stem params, rest params)``: the model's ``prune`` up to ``cut``, and the others."""
    stem = model.prune(params, cut)
    return stem, {k: v for k, v in params.items() if k not in stem}


def staged_step(model: Model, layer: str, cfg: FilterConfig, objective, *, cut: str, size: int, mesh,
                width: int) -> tuple[Callable, Callable]:
    """``(step, prepare)``: the staged step and ``prepare(params) -> (stem params, rest params)``, run
    as it is (Winograd's kernel transforms in numpy: :func:`jaxvis.models.winograd.prepare`). The stem's
    convolutions are planned as one chain at one image per call, the rest's at ``width``
    (:func:`jaxvis.visualize.step.specialized`)."""
    stem_k = specialized(model, cut, cfg, size, 1, whole=True)
    rest_k = specialized(model, layer, cfg, size, width, after=cut)
    step = make_staged(model, layer, cfg, objective, cut=cut, stem_model=stem_k, rest_model=rest_k, mesh=mesh,
                       width=width)

    def prepare(params):
        return tuple(k.prepare(q) if k.prepare else q for k, q in zip((stem_k, rest_k), split_params(model, cut, params)))
    return step, prepare


def make_staged(model: Model, layer: str, cfg: FilterConfig, objective, *, cut: str, stem_model: Model,
                rest_model: Model, mesh, width: int) -> Callable:
    """The staged step (module docstring). ``stem_model`` runs the layers up to ``cut`` (one image per
    call), ``rest_model`` those after it (groups of ``width``); each is given its own params."""
    model_input = image_input(model, cfg)
    to_image = cfg.param.to_image
    stem_fwd = forward(stem_model, cut, dtype=cfg.dtype, redirect=cfg.redirect)
    rest_fwd = forward(rest_model, layer, dtype=cfg.dtype, redirect=cfg.redirect, after=cut)

    def active(t):
        return (t < cfg.redirect_relu_steps).astype(jnp.float32) if cfg.redirect else None

    def head(p, key, t):
        """[H', W', 3] model input of one filter's param."""
        return model_input(to_image(p), jax.random.fold_in(key, t + 1))

    def stem(params, xs, i, t):
        """Image ``i`` of one device's share ``xs [n, H', W', 3]``: (``h [1, h, w, c]``, its pullback)."""
        xi = jax.lax.dynamic_slice_in_dim(xs, i, 1)
        return jax.vjp(lambda a: stem_fwd(params, a, active(t))[cut], xi)

    def stem_back(pull, gs, i):
        return pull(jax.lax.dynamic_slice_in_dim(gs, i, 1))[0]

    group_tail = tail_of_group(rest_fwd, objective)

    def tail(params, hs, fs, t):
        return group_tail(params, hs, fs, active(t))

    def finish(p, opt_state, dx, key, t):
        img, pull_img = jax.vjp(to_image, p)
        g_img = jax.vjp(lambda im: model_input(im, jax.random.fold_in(key, t + 1)), img)[1](dx)[0]
        g = pull_img(g_img)[0]
        return update(cfg, p, opt_state, g, g_img if cfg.param.accumulate is not None else None, key, t)

    heads = sharding.shard_batched(head, (0, 0, None), mesh, width)
    tails = sharding.shard_batched(tail, (None, 0, 0, None), mesh, width, vmapped=False)
    finishes = sharding.shard_batched(finish, (0, 0, 0, 0, None), mesh, width)
    stem_j = xla.jit_unforwarded(stem)   # its pullback holds the stem's kernels: passed through, not copied
    back_j = xla.jit(stem_back)

    def step(params, p, opt_state, f, keys, t, real):
        p_stem, p_rest = params
        x = heads(p, keys, t)
        on = _per_device(p_stem)
        pulls, hs = {}, []
        for shard in x.addressable_shards:
            d, n = shard.device, shard.data.shape[0]
            k = min(max(real - (shard.index[0].start or 0), 1), n)  # this device's real slots, >= 1
            outs = [stem_j(on[d], shard.data, i, t) for i in range(k)]
            pulls[d] = [pull for _, pull in outs]
            hs.append(jnp.concatenate([h for h, _ in outs] + [outs[-1][0]] * (n - k)))
        h = _assemble(hs, x)
        loss, dh = tails(p_rest, h, f, t)
        dxs = []
        for shard in dh.addressable_shards:
            parts = [back_j(pull, shard.data, i) for i, pull in enumerate(pulls[shard.device])]
            dxs.append(jnp.concatenate(parts + [parts[-1]] * (shard.data.shape[0] - len(parts))))
        p, opt_state = finishes(p, opt_state, _assemble(dxs, dh), keys, t)
        return p, opt_state, loss

    return step


def tail_of_group(rest_fwd: Callable, objective) -> Callable:
    """``tail(params, hs, fs, active) -> (objectives [n], d objective / d hs [n, h, w, c])`` for a group of
    stem activations ``hs [n, h, w, c]`` of filters ``fs [n]``: ``rest_fwd(params, hs, active)`` runs on the
    group as one batch (under ``vmap``, one image at a time, VGG16's tail took twice as long to trace), the
    objective per filter (``vmap`` of ``objective(acts [1, ...], f)``); the gradient of their sum hands each
    filter its own (a network that treats the images of a batch independently: :mod:`jaxvis.models.protocol`'s
    ``resume``). An objective that does not give one number per filter raises TypeError."""
    def one(acts_i, f):
        value = objective(jax.tree_util.tree_map(lambda v: v[None], acts_i), f)
        if jnp.ndim(value):   # as value_and_grad of a per-filter objective refuses it
            raise TypeError(f'the objective must give one number per filter, it gave shape {jnp.shape(value)}')
        return value

    def tail(params, hs, fs, active):
        def total(a):
            losses = jax.vmap(one)(rest_fwd(params, a, active), fs).astype(jnp.float32)
            return losses.sum(), losses
        (_, losses), dh = jax.value_and_grad(total, has_aux=True)(hs)
        return losses, dh
    return tail


def _per_device(tree) -> dict:
    """``{device: tree}`` of a pytree placed whole on one or more devices (replicated params)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out: dict = {}
    for leaf in leaves:
        for shard in leaf.addressable_shards:
            out.setdefault(shard.device, []).append(shard.data)
    return {d: jax.tree_util.tree_unflatten(treedef, v) for d, v in out.items()}


def _assemble(parts: list, like: jax.Array) -> jax.Array:
    """One array split along axis 0 as ``like`` is, from its devices' parts (in ``like``'s shard order)."""
    if len(parts) == 1 and len(like.addressable_shards) == 1 and len(like.sharding.device_set) == 1:
        return parts[0]
    return jax.make_array_from_single_device_arrays((like.shape[0],) + parts[0].shape[1:], like.sharding, parts)
