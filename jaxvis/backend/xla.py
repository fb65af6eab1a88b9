"""What XLA needs to run jaxvis's steps fast: per-``jit`` compiler options (CPU only).

jaxlib 0.10 sends convolutions and dots to YNNPACK by default; on our 2-core AVX2 machines Eigen's
were about 1.3x faster over VGG16's 11 convolutions up to block5_conv1 (forward + input gradient,
batch 16; ``scripts/conv_layers.py``, docs/performance.md), so jaxvis compiles its float32 steps with
YNNPACK off. A bfloat16 step keeps YNNPACK for its dots only: YNNPACK's bf16 dot with float32 results is
the one operation of XLA:CPU that reaches the AMX tiles of an Intel CPU (1233-1447 GFLOP/s against 284
for an fp32 matmul, 2-core Xeon, docs/performance.md), and the Winograd products of a bf16 step are such
dots (:mod:`jaxvis.models.winograd`); its convolutions stay Eigen's. The options are set per ``jit``
call, never through a global ``XLA_FLAGS``; ``JAXVIS_XLA_DEFAULTS=1`` keeps XLA's choice. On a GPU/TPU
backend nothing is set.
"""
from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.extend.core import jaxpr_as_fun

_YNN = 'xla_cpu_experimental_ynn_fusion_type'
_CPU_OPTIONS = {
    'float32': ((_YNN, ''),),  # no YNNPACK fusions: Eigen convs and dots
    'bfloat16': ((_YNN, 'LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'),),  # YNNPACK dots only
}


def backend_name(backend: str | None = None) -> str:
    return backend or jax.default_backend()


@functools.cache
def _cpu_options_work(dtype: str = 'float32') -> bool:
    """Whether this jaxlib accepts the CPU options (an unknown option would fail every compile)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(_CPU_OPTIONS[dtype])).lower(np.float32(0)).compile()
    except Exception:  # noqa: BLE001 - any refusal means: leave XLA's defaults alone
        return False
    return True


def compiler_options(backend: str | None = None, dtype: str = 'float32') -> dict | None:
    """``compiler_options`` for ``jax.jit`` of jaxvis's steps in ``dtype`` ('float32' or 'bfloat16', the
    network's precision): on CPU Eigen convolutions, and YNNPACK's dots in bf16; else None."""
    if os.environ.get('JAXVIS_XLA_DEFAULTS', '') not in ('', '0') or backend_name(backend) != 'cpu':
        return None
    for name in (('bfloat16', 'float32') if dtype == 'bfloat16' else ('float32',)):
        if _cpu_options_work(name):  # a jaxlib refusing bf16's options still gets Eigen's convolutions
            return dict(_CPU_OPTIONS[name])
    return None


def jit(fn, **kw):
    """``jax.jit(fn, compiler_options=compiler_options(), **kw)`` (float32's options, read when called)."""
    return jax.jit(fn, compiler_options=compiler_options(), **kw)


def jit_unforwarded(fn):
    """:func:`jit` of ``fn``, except that outputs which are input arrays passed through unchanged are
    not outputs of the compiled program: the caller gets those ``jax.Array`` inputs themselves. XLA:CPU
    copies every output that is an input (200 returned ``[128, 128]`` inputs: 200 copies); a staged
    stem's pullback holds the prepared Winograd kernels, 217 of its 230 leaves, 8 MB per image and step
    on VGG16.

    ``fn`` is traced once per argument structure and abstract value (``jax.typeof``: shape, dtype, weak
    type) of each leaf (``jax.make_jaxpr``); the program compiled evaluates that jaxpr once and returns the
    outputs that are not passed through (the same computation). No static or donated arguments; the
    configuration (x64, matmul precision) is that of the first call."""
    plans: dict = {}

    def call(*args):
        flat, in_tree = jax.tree_util.tree_flatten(args)
        key = (in_tree, tuple((jax.typeof(a), isinstance(a, jax.Array)) for a in flat))
        if key not in plans:
            closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
            where = {id(v): i for i, v in enumerate(closed.jaxpr.invars) if isinstance(flat[i], jax.Array)}
            src = [where.get(id(v)) for v in closed.jaxpr.outvars]   # the input each output is, or None
            keep = [i for i, s in enumerate(src) if s is None]
            run = jaxpr_as_fun(closed)

            def kept(*a):
                outs = run(*a)   # traced once
                return [outs[i] for i in keep]
            kept.__name__ = getattr(fn, '__name__', 'kept')
            plans[key] = (src, jit(kept), jax.tree_util.tree_structure(shape))
        src, compiled, out_tree = plans[key]
        made = iter(compiled(*flat))
        return jax.tree_util.tree_unflatten(out_tree, [next(made) if s is None else flat[s] for s in src])
    return call
