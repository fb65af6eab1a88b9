"""3x3 'SAME' stride-1 convolutions by Winograd's minimal filtering, F(2x2, 3x3) and F(4x4, 3x3).

Each m x m output tile costs ``(m + 2)^2`` products per input-output channel pair instead of ``9 m^2``:
2.25x fewer multiply-adds for F(2x2, 3x3), 4x fewer for F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016). The input tiles and the kernel are transformed, the
``(m + 2)^2`` tile positions become independent ``[tiles, C_in] @ [C_in, C_out]`` matmuls, and the
results are transformed back. The input gradient is the same convolution with the kernel flipped and
its channel axes swapped, so it runs through the same Winograd code (a ``custom_vjp``); the kernel
gradient goes through ``lax`` (and is dropped by XLA when nobody asks for it).

The kernel's transforms cost as much as the products on the deep layers at a batch of 8 (a 512 -> 512
kernel: 16 or 36 transformed ``[512, 512]`` matrices, twice); in an ascent the kernel never changes, so
:func:`prepare` transforms it once and :func:`conv3x3_prepared` takes the result, as ``(m + 2)^2``
separate ``[C, K]`` matrices: XLA:CPU copies a slice of one ``[m + 2, m + 2, C, K]`` array before a dot
reads it, which cost as much as the products at 512 channels (docs/performance.md).

Rounding differs from a direct convolution: relative to the output's largest value, about 2e-6
(F2) and 2e-5 (F4) in float32 (tests/test_winograd.py). In bfloat16 the transforms stay float32 and the
products are bf16 dots with float32 results: F2 about 4e-3, as a direct bf16 convolution; F4 7e-2.
Where it is faster is measured, not assumed:
see :func:`jaxvis.tuning.conv_plan` and docs/performance.md.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxvis.backend.tune import Kernel
from jaxvis.models import onednn_conv

# (B^T, G, A^T) for F(m x m, 3 x 3): tile t = m + 2; B^T [t, t], G [t, 3], A^T [m, t].
_F2 = (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32),
       np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32),
       np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32))
_F4 = (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float32),
       np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                 [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float32),
       np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float32))
TRANSFORMS = {2: _F2, 4: _F4}


def conv3x3_direct(x: jax.Array, w: jax.Array) -> jax.Array:
    """``lax`` 3x3 'SAME' stride-1 convolution: x ``[N, H, W, C]``, w ``[3, 3, C, K]`` -> ``[N, H, W, K]``."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _combine(coefs: np.ndarray, arrays) -> jax.Array:
    """``sum_i coefs[i] * arrays[i]`` left to right, skipping zeros and writing +-1 as adds (fused by XLA);
    jax arrays through ``lax`` (``jnp``'s promotion checks were half of a Winograd layer's tracing; the
    same program), numpy float32 arrays (:func:`host_transform`) in float32 too (a Python float scales as
    float32)."""
    add, neg, scale = _NUMPY_OPS if isinstance(arrays[0], np.ndarray) else _LAX_OPS
    out = None
    for c, a in zip(coefs.tolist(), arrays):
        if c == 0:
            continue
        term = a if c == 1 else (neg(a) if c == -1 else scale(c, a))
        out = term if out is None else add(out, term)
    return out


_LAX_OPS = (jax.lax.add, jax.lax.neg, jax.lax.mul)   # a Python float scales in the array's dtype
_NUMPY_OPS = (np.add, np.negative, np.multiply)


def _product(d: jax.Array, u: jax.Array) -> jax.Array:
    """One tile position's product: transformed input ``[N, ht, wt, C]`` @ transformed kernel ``[C, K]``,
    in their dtype with float32 results (for bf16: YNNPACK's bf16 dot, AMX where the CPU has it)."""
    return jax.lax.dot_general(d, u, (((3,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def kernel_transform(w: jax.Array, m: int) -> jax.Array:
    """``G w G^T`` per channel pair: w ``[3, 3, C, K]`` -> ``[m + 2, m + 2, C, K]`` float32."""
    g = TRANSFORMS[m][1]
    return jnp.einsum('ai,ijck,bj->abck', g, w.astype(jnp.float32), g)


def host_transform(w: np.ndarray, m: int) -> tuple[np.ndarray, ...]:
    """:func:`split` of :func:`kernel_transform`, in numpy: w ``[3, 3, C, K]`` -> ``(m + 2)^2`` float32
    ``[C, K]`` matrices. The sums run in the order XLA:CPU's einsum runs them (rows of G over w's first
    axis, then over its second; the same bytes, tests/test_winograd.py, but for the sign of a zero where w
    holds -0.0: zero terms are skipped), with nothing to compile: XLA:CPU took 3.8 s to compile VGG16's
    tail kernel transforms on a 2-core Xeon and 0.5-0.6 s to run them; numpy 0.4 s (0.6 handed to jax)."""
    g, w = TRANSFORMS[m][1], np.asarray(w, np.float32)
    rows = [_combine(g[a], w) for a in range(m + 2)]   # [3, C, K]: G's row a over w's first axis
    return tuple(_combine(g[b], r) for r in rows for b in range(m + 2))


def split(u: jax.Array) -> tuple[jax.Array, ...]:
    """A transformed kernel ``[t, t, C, K]`` as its ``t * t`` matrices ``[C, K]``, row-major over the tile
    positions: the form :func:`_tiles` takes (each a buffer of its own, which a dot reads in place)."""
    return tuple(u[a, b] for a in range(u.shape[0]) for b in range(u.shape[1]))


def _winograd(x: jax.Array, w: jax.Array, m: int, product=_product) -> jax.Array:
    """The forward pass: x ``[N, H, W, C]``, w ``[3, 3, C, K]`` -> ``[N, H, W, K]`` (any H, W >= 1).
    ``product`` computes each of the ``(m + 2)^2`` products (scripts/bf16_matmul.py passes a bf16 one)."""
    return _tiles(x, split(kernel_transform(w, m).astype(x.dtype)), m, product)


def _tiles(x: jax.Array, u, m: int, product=_product) -> jax.Array:
    """The forward pass with the kernel transformed: x ``[N, H, W, C]``, u the ``(m + 2)^2`` matrices
    ``[C, K]`` of :func:`split` -> ``[N, H, W, K]`` in x's dtype. The transforms run in float32 whatever
    x's dtype (XLA:CPU's bf16 arithmetic is slower than its fp32), the products in u's dtype with float32
    results."""
    bt, _, at = TRANSFORMS[m]
    t = m + 2
    dtype, x = x.dtype, x.astype(jnp.float32)
    n, h, wd, _ = x.shape
    ht, wt = -(-h // m), -(-wd // m)
    # Zero rows/columns past the image change nothing: 'SAME' pads with zeros there anyway.
    xp = jnp.pad(x, ((0, 0), (1, 1 + ht * m - h), (1, 1 + wt * m - wd), (0, 0)))
    d = [[jax.lax.slice(xp, (0, i, j, 0), (n, min(i + m * ht, xp.shape[1]), min(j + m * wt, xp.shape[2]), xp.shape[3]),
                        (1, m, m, 1)) for j in range(t)] for i in range(t)]  # [N, ht, wt, C]: xp[:, i::m, j::m]
    prod = {}
    for a in range(t):
        rows = [_combine(bt[a], [d[i][j] for i in range(t)]) for j in range(t)]
        for b in range(t):
            k = u[a * t + b]
            prod[a, b] = product(_combine(bt[b], rows).astype(k.dtype), k)
    cols = [[_combine(at[q], [prod[a, b] for b in range(t)]) for q in range(m)] for a in range(t)]
    y = jnp.stack([jnp.stack([_combine(at[p], [cols[a][q] for a in range(t)]) for q in range(m)], axis=3)
                   for p in range(m)], axis=2)  # [N, ht, m, wt, m, K]
    return y.reshape(n, ht * m, wt * m, -1)[:, :h, :wd].astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3_winograd(x: jax.Array, w: jax.Array, m: int = 2) -> jax.Array:
    """Winograd F(m x m, 3 x 3), m in {2, 4}: the same result as :func:`conv3x3_direct` up to rounding.

    x: ``[N, H, W, C]``; w: ``[3, 3, C, K]`` (HWIO); returns ``[N, H, W, K]``. Differentiable in both.
    """
    return _winograd(x, w, m)


# The rules below take symbolic zeros: a kernel nobody differentiates (an ascent differentiates the
# image only) gets no cotangent, so its pullback is neither traced nor lowered (tracing that pullback
# was most of the time spent tracing a Winograd step). The residual holds x only when it is needed.

def _fwd(x, w, m):
    return _winograd(x.value, w.value, m), (x.value if w.perturbed else None, w.value)


def _bwd(m, res, g):
    x, w = res
    if type(g) is SymbolicZero:
        return None, None
    dw = None if x is None else jax.vjp(lambda k: conv3x3_direct(x, k), w)[1](g)[0]
    return _winograd(g, _flipped(w), m), dw


conv3x3_winograd.defvjp(_fwd, _bwd, symbolic_zeros=True)


def _flipped(w: jax.Array) -> jax.Array:
    """The kernel of the input gradient: w ``[3, 3, C, K]`` -> ``[3, 3, K, C]``."""
    return jnp.flip(w, (0, 1)).swapaxes(2, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _winograd_prepared(x: jax.Array, u: tuple, ub: tuple, m: int) -> jax.Array:
    return _tiles(x, u, m)


def _prepared_fwd(x, u, ub, m):   # u, ub: tuples of CustomVJPPrimal (symbolic zeros, leaf by leaf)
    uv, ubv = tuple(v.value for v in u), tuple(v.value for v in ub)
    return _tiles(x.value, uv, m), (x.value if any(v.perturbed for v in u) else None, uv, ubv)


def _prepared_bwd(m, res, g):
    x, u, ub = res
    if type(g) is SymbolicZero:
        return None, None, None
    du = None if x is None else jax.vjp(lambda v: _tiles(x, v, m), u)[1](g)[0]
    return _tiles(g, ub, m), du, None   # the output does not depend on ub


_winograd_prepared.defvjp(_prepared_fwd, _prepared_bwd, symbolic_zeros=True)


def _impl(impl: str) -> int:
    """0 for 'direct', m for 'winograd<m>', -1 for 'onednn'."""
    if impl == 'direct':
        return 0
    if impl in ('winograd2', 'winograd4'):
        return int(impl[-1])
    if impl == 'onednn':
        return -1
    raise ValueError(f"conv impl must be 'direct', 'winograd2', 'winograd4' or 'onednn', got {impl!r}")


def prepare(w: jax.Array, impl: str):
    """The kernel in the form :func:`conv3x3_prepared` takes for ``impl``: w ``[3, 3, C, K]`` itself for
    'direct'; for Winograd F(m) the pair ``(u, ub)``, the transformed kernel and the transformed kernel of
    the input gradient, float32, each as :func:`split`'s ``(m + 2)^2`` matrices (``[C, K]`` for u,
    ``[K, C]`` for ub); for 'onednn' oneDNN's two layouts
    of w in w's dtype (:func:`jaxvis.models.onednn_conv.prepare`: prepare in the step's precision)."""
    m = _impl(impl)
    if m < 0:
        return onednn_conv.prepare(w)
    if not m:
        return w
    if isinstance(w, jax.core.Tracer):   # under a transformation: XLA computes it
        return split(kernel_transform(w, m)), split(kernel_transform(_flipped(w), m))
    w = np.array(w, np.float32)          # concrete (the engine prepares once per job): numpy, nothing to compile;
    # a copy: a single-term transform is a view of w, which device_put may keep instead of copying
    flipped = np.ascontiguousarray(np.swapaxes(w[::-1, ::-1], 2, 3))   # _flipped(w), [3, 3, K, C]
    return jax.device_put((host_transform(w, m), host_transform(flipped, m)))   # one transfer (not 2 (m+2)^2)


def conv3x3_prepared(x: jax.Array, k, impl: str) -> jax.Array:
    """:func:`conv3x3` with the kernel ``k = prepare(w, impl)``: x ``[N, H, W, C]`` -> ``[N, H, W, K]``.
    Differentiable in x and in ``k`` (the transformed kernel's gradient; none reaches ``ub``)."""
    m = _impl(impl)
    if m < 0:
        return onednn_conv.conv3x3_onednn(x, *k)
    if not m:
        return conv3x3_direct(x, k.astype(x.dtype))
    u, ub = jax.tree_util.tree_map(lambda v: v.astype(x.dtype), tuple(k))
    return _winograd_prepared(x, u, ub, m)


def conv3x3(x: jax.Array, w: jax.Array, impl: str = 'direct') -> jax.Array:
    """A 3x3 'SAME' convolution by ``impl``: 'direct' (``lax``), 'winograd2', 'winograd4' or 'onednn'
    (its kernel prepared in every call: prefer :func:`conv3x3_prepared`)."""
    m = _impl(impl)
    if m < 0:
        return onednn_conv.conv3x3_onednn(x, *onednn_conv.prepare(w.astype(x.dtype)))
    return conv3x3_direct(x, w) if not m else conv3x3_winograd(x, w, m)


KERNEL = Kernel(conv3x3_prepared, prepare)  # what the convolution plan times (jaxvis.backend.tune)
