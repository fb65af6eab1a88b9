"""A 3x3 'SAME' convolution run by oneDNN (:mod:`jaxvis.backend.onednn`) inside a jitted JAX step.

The forward and the input gradient are XLA FFI calls (:mod:`jaxvis.backend.xla_ffi`) on XLA's own CPU
buffers (``jax.pure_callback``'s copies cost more than the convolution); the
kernel is prepared once (:func:`prepare`: oneDNN's blocked layouts for the forward and the backward-data
convolution, two ``uint8`` arrays whose first axes are K and C). Under ``vmap`` the mapped axes of the
image fold into oneDNN's batch (one call). Differentiable in the image only (an ascent's need): the
prepared kernels are bytes, and :func:`prepare` (a host callback) has no derivative. CPU only.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxvis.backend import onednn, xla_ffi
from jaxvis.backend.conv_plan import onednn_missing


def _rows(size: int, n: int) -> tuple[int, int]:
    return n, -(-size // n)


def _host_prepare(w):
    w = np.asarray(w)
    c, k = w.shape[2], w.shape[3]
    outs = []
    for arr, n in zip(onednn.prepare(w), (k, c)):
        rows, cols = _rows(arr.size, n)
        outs.append(np.pad(arr, (0, rows * cols - arr.size)).reshape(rows, cols))
    return tuple(outs)


def prepare(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``w [3, 3, C, K]`` (float32 or bfloat16: the step's precision) -> ``(wf [K, nf], wb [C, nb])``
    uint8, oneDNN's forward and backward-data kernels (padded flat bytes)."""
    c, k = w.shape[2], w.shape[3]
    sf, sb = onednn.prepared_sizes(c, k, w.dtype)
    shapes = (jax.ShapeDtypeStruct(_rows(sf, k), jnp.uint8), jax.ShapeDtypeStruct(_rows(sb, c), jnp.uint8))
    return jax.pure_callback(_host_prepare, shapes, w, vmap_method='sequential')


def _host_apply(direction: str, x, kern, out) -> None:
    """:func:`jaxvis.backend.onednn.run` over the leading (vmapped) axes of x ``[..., N, H, W, C]`` and
    kern ``[..., rows, cols]``, writing ``out`` (XLA's result buffer) in place."""
    img = x.shape[-4:]
    if math.prod(kern.shape[:-2]) == 1:   # one kernel: the mapped axes are more images
        onednn.run(direction, x.reshape((-1,) + img[1:]), kern, out.reshape((-1,) + out.shape[-3:]))
        return
    lead = out.shape[:-4]
    xs, ks = np.broadcast_to(x, lead + img), np.broadcast_to(kern, lead + kern.shape[-2:])
    for i in np.ndindex(*lead):
        onednn.run(direction, xs[i], np.ascontiguousarray(ks[i]), out[i])


def _handler(direction: str):
    def handler(args, rets):
        x, kern = args
        (out,) = rets
        _host_apply(direction, x, kern, out)
    return handler


def _call(direction: str, x, kern, out_c: int):
    name = f'jaxvis_onednn_{direction}'
    xla_ffi.register(name, _handler(direction))
    out = jax.ShapeDtypeStruct(x.shape[:-1] + (out_c,), x.dtype)
    return _varying_as(jax.ffi.ffi_call(name, out, vmap_method='expand_dims')(x, kern), x, kern)


def _varying(a) -> frozenset:
    t = jax.typeof(a)
    manual = getattr(t, 'manual_axis_type', None)   # jax 0.10; earlier: .vma
    return frozenset(manual.varying) if manual is not None else frozenset(getattr(t, 'vma', ()))


def _varying_as(y, *args):
    """``y`` varying over the manual (``shard_map``) mesh axes its inputs vary over: an FFI call's result
    is typed as varying over none, which a custom VJP rule under ``shard_map`` refuses."""
    want = frozenset().union(*(_varying(a) for a in args))
    missing = tuple(sorted(want - _varying(y)))
    return jax.lax.pcast(y, missing, to='varying') if missing else y


@jax.custom_vjp
def conv3x3_onednn(x: jax.Array, wf: jax.Array, wb: jax.Array) -> jax.Array:
    """x ``[N, H, W, C]`` (float32 or bfloat16) with the prepared kernel -> ``[N, H, W, K]`` in x's dtype;
    differentiable in x."""
    c, k = x.shape[-1], wf.shape[0]
    if why := onednn_missing(jnp.dtype(x.dtype).name):
        raise ValueError(f'conv3x3_onednn: {why}')
    sf, sb = onednn.prepared_sizes(c, k, x.dtype)
    if wf.shape != _rows(sf, k) or wb.shape != _rows(sb, c) or wf.dtype != jnp.uint8:
        raise ValueError(f'kernel prepared for another convolution: {c} -> {k} channels in {x.dtype} takes '
                         f'uint8 {_rows(sf, k)} and {_rows(sb, c)}, got {wf.dtype} {wf.shape} and {wb.shape}')
    return _call('forward', x, wf, k)


def _fwd(x, wf, wb):
    # x[..., :0]: no data, but x's type under shard_map (the mesh axes it varies over), which dx must have
    return conv3x3_onednn(x.value, wf.value, wb.value), (x.value[..., :0], x.value.shape[-1], wb.value)


def _bwd(res, g):
    like_x, c, wb = res
    if type(g) is SymbolicZero:
        return None, None, None
    return _varying_as(_call('backward_data', g, wb, c), like_x), None, None   # kernels: bytes, no cotangent


conv3x3_onednn.defvjp(_fwd, _bwd, symbolic_zeros=True)
