"""oneDNN's 3x3 convolutions on the host, through ``ctypes``: the CPU convolutions PyTorch runs.

XLA:CPU's convolutions reach neither AMX nor oneDNN (docs/performance.md, "The Intel AMX kind"); oneDNN's
run 1.4-6x faster on a 2-core Xeon with AMX (bf16 1400-3400 GFLOP/s against XLA's 200-260). This module
loads ``libdnnl.so.3`` (the ``onednn-cpu-gomp`` wheel puts it in ``<prefix>/lib``; ``JAXVIS_ONEDNN`` names
another file, ``JAXVIS_ONEDNN=0`` turns it off) and runs a 3x3 'SAME' stride-1 convolution forward and
its input gradient (backward data) on numpy arrays: NHWC images, the kernel in oneDNN's own blocked
layout (:func:`prepare`, once per job). :mod:`jaxvis.models.onednn_conv` calls it from a jitted step.
Pure functions of their inputs: the same arrays give the same bytes (oneDNN's forward and backward-data
convolutions reduce in a fixed order); nothing here is global but the library and cached primitives.
"""
from __future__ import annotations

import ctypes
import functools
import os
import site
import sys
import threading
from pathlib import Path

import numpy as np

_F32, _BF16, _ANY, _NHWC, _HWIO = 3, 2, 1, 22, 28       # dnnl_data_type_t, dnnl_format_tag_t
_FWD_TRAINING, _DIRECT, _CPU, _STREAM_DEFAULT = 64, 1, 1, 1
_Q_WEIGHTS, _Q_IMPL = 131, 8                             # dnnl_query_t
_SRC, _DST, _WEIGHTS, _DIFF_SRC, _DIFF_DST = 1, 17, 33, 129, 145   # DNNL_ARG_*
PLAN_SHAPE = (8, 16)   # (images, side) whose kernel layout prepare() writes; other shapes reorder from it

_Dims = ctypes.c_int64 * 12
_vp = ctypes.c_void_p


class _Arg(ctypes.Structure):
    _fields_ = [('arg', ctypes.c_int), ('memory', _vp)]


def _candidates() -> list[str]:
    env = os.environ.get('JAXVIS_ONEDNN', '')
    if env:
        return [] if env in ('0', 'off', 'false') else [env]
    bases = [sys.prefix, site.getuserbase()]   # where pip puts the wheel's lib/ (a venv; pip --user)
    return [str(Path(b) / 'lib' / 'libdnnl.so.3') for b in bases] + ['libdnnl.so.3']


class _Lib:
    """The loaded library, one CPU engine and stream; calls into it hold a lock (one stream)."""

    def __init__(self, path: str):
        self.dll = dll = ctypes.CDLL(path)
        dll.dnnl_primitive_desc_query_md.restype = _vp
        dll.dnnl_primitive_desc_query_md.argtypes = [_vp, ctypes.c_int, ctypes.c_int]
        dll.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        dll.dnnl_memory_desc_get_size.argtypes = [_vp]
        dll.dnnl_memory_desc_equal.argtypes = [_vp, _vp]
        self.engine, self.stream = _vp(), _vp()
        self.ok(dll.dnnl_engine_create(ctypes.byref(self.engine), _CPU, 0), 'engine')
        self.ok(dll.dnnl_stream_create(ctypes.byref(self.stream), self.engine, _STREAM_DEFAULT), 'stream')
        self.lock = threading.Lock()

    @staticmethod
    def ok(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f'oneDNN {what} failed (dnnl_status_t {status})')

    def md(self, dims, dtype: int, tag: int) -> _vp:
        m = _vp()
        self.ok(self.dll.dnnl_memory_desc_create_with_tag(ctypes.byref(m), len(dims), _Dims(*dims), dtype, tag),
                'memory descriptor')
        return m

    def primitive(self, pd: _vp) -> _vp:
        p = _vp()
        self.ok(self.dll.dnnl_primitive_create(ctypes.byref(p), pd), 'primitive')
        return p

    def run(self, prim: _vp, args: list[tuple[int, _vp, np.ndarray]]) -> None:
        """Execute ``prim`` on ``(DNNL_ARG_*, memory descriptor, array)`` triples and wait."""
        mems = []
        try:
            for _, md, arr in args:
                m = _vp()
                self.ok(self.dll.dnnl_memory_create(ctypes.byref(m), md, self.engine, _vp(arr.ctypes.data)), 'memory')
                mems.append(m)
            table = (_Arg * len(args))(*[_Arg(a, m) for (a, _, _), m in zip(args, mems)])
            with self.lock:
                self.ok(self.dll.dnnl_primitive_execute(prim, self.stream, len(args), table), 'execute')
                self.ok(self.dll.dnnl_stream_wait(self.stream), 'stream wait')
        finally:
            for m in mems:
                self.dll.dnnl_memory_destroy(m)


@functools.cache
def _lib() -> _Lib | None:
    for path in _candidates():
        try:
            return _Lib(path)
        except (OSError, RuntimeError, AttributeError):
            continue
    return None


def available(dtype: str = 'float32') -> bool:
    """Whether oneDNN loaded (and was not turned off with ``JAXVIS_ONEDNN=0``) and has a convolution in
    ``dtype`` on this CPU (bf16 needs AVX-512 bf16 or AMX; an AVX2-only CPU has none)."""
    return _lib() is not None and _has(dtype)


@functools.cache
def _has(dtype: str) -> bool:
    try:
        _plan(64, 64, _dtype_code(dtype))
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


def _dtype_code(dtype) -> int:
    name = np.dtype(dtype).name
    if name not in ('float32', 'bfloat16'):
        raise ValueError(f'oneDNN convolutions take float32 or bfloat16, got {name}')
    return _F32 if name == 'float32' else _BF16


class _Conv:
    """Forward and backward-data primitives for ``[n, h, w, c] -> [n, h, w, k]`` in one dtype."""

    def __init__(self, lib: _Lib, n: int, h: int, w: int, c: int, k: int, dt: int):
        d = lib.dll
        self.src, self.dst = lib.md([n, c, h, w], dt, _NHWC), lib.md([n, k, h, w], dt, _NHWC)
        wany = lib.md([k, c, 3, 3], dt, _ANY)
        one, zero = _Dims(1, 1), _Dims(0, 0)
        self.fpd, self.bpd = _vp(), _vp()
        lib.ok(d.dnnl_convolution_forward_primitive_desc_create(
            ctypes.byref(self.fpd), lib.engine, _FWD_TRAINING, _DIRECT, self.src, wany, None, self.dst,
            one, zero, one, one, None), 'convolution forward descriptor')
        lib.ok(d.dnnl_convolution_backward_data_primitive_desc_create(
            ctypes.byref(self.bpd), lib.engine, _DIRECT, self.src, wany, self.dst, one, zero, one, one,
            self.fpd, None), 'convolution backward-data descriptor')
        self.fwd, self.bwd = lib.primitive(self.fpd), lib.primitive(self.bpd)
        self.w_fwd = _vp(d.dnnl_primitive_desc_query_md(self.fpd, _Q_WEIGHTS, 0))
        self.w_bwd = _vp(d.dnnl_primitive_desc_query_md(self.bpd, _Q_WEIGHTS, 0))
        self.hwio = lib.md([k, c, 3, 3], dt, _HWIO)

    def impl(self) -> tuple[str, str]:
        """oneDNN's names for the implementations it chose (forward, backward data)."""
        names = []
        for pd in (self.fpd, self.bpd):
            s = ctypes.c_char_p()
            _lib().dll.dnnl_primitive_desc_query(pd, _Q_IMPL, 0, ctypes.byref(s))
            names.append(s.value.decode())
        return tuple(names)


@functools.cache
def _conv(n: int, h: int, w: int, c: int, k: int, dt: int) -> _Conv:
    return _Conv(_lib(), n, h, w, c, k, dt)


@functools.cache
def _reorder(src_md: int, dst_md: int) -> _vp:
    lib = _lib()
    pd = _vp()
    lib.ok(lib.dll.dnnl_reorder_primitive_desc_create(ctypes.byref(pd), _vp(src_md), lib.engine, _vp(dst_md),
                                                      lib.engine, None), 'reorder descriptor')
    return lib.primitive(pd)


def _size(md: _vp) -> int:
    return int(_lib().dll.dnnl_memory_desc_get_size(md))


def _reordered(src_md: _vp, arr: np.ndarray, dst_md: _vp) -> np.ndarray:
    lib = _lib()
    if lib.dll.dnnl_memory_desc_equal(src_md, dst_md):
        return arr
    out = np.empty(_size(dst_md), np.uint8)
    lib.run(_reorder(src_md.value, dst_md.value), [(_SRC, src_md, arr), (_DST, dst_md, out)])
    return out


def _plan(c: int, k: int, dt: int) -> _Conv:
    n, side = PLAN_SHAPE
    return _conv(n, side, side, c, k, dt)


def prepared_sizes(c: int, k: int, dtype) -> tuple[int, int]:
    """Bytes of :func:`prepare`'s two arrays for a ``c -> k`` kernel in ``dtype``."""
    p = _plan(c, k, _dtype_code(dtype))
    return _size(p.w_fwd), _size(p.w_bwd)


def prepare(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel ``w [3, 3, C, K]`` (float32 or bfloat16) in oneDNN's layouts for the forward and the
    backward-data convolution at :data:`PLAN_SHAPE`: two flat ``uint8`` arrays."""
    w = np.ascontiguousarray(w)
    c, k, dt = w.shape[2], w.shape[3], _dtype_code(w.dtype)
    p = _plan(c, k, dt)
    return _reordered(p.hwio, w, p.w_fwd), _reordered(p.hwio, w, p.w_bwd)


def _out(out, shape, dtype) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f'out must be a C-contiguous {np.dtype(dtype).name} array of shape {shape}')
    return out


def forward(x: np.ndarray, wf: np.ndarray, k: int, out: np.ndarray | None = None) -> np.ndarray:
    """``x [N, H, W, C]`` convolved with the prepared forward kernel -> ``[N, H, W, k]`` in x's dtype
    (written into ``out`` when given)."""
    x = np.ascontiguousarray(x)
    n, h, w, c = x.shape
    dt = _dtype_code(x.dtype)
    cv, p = _conv(n, h, w, c, k, dt), _plan(c, k, dt)
    y = _out(out, (n, h, w, k), x.dtype)
    _lib().run(cv.fwd, [(_SRC, cv.src, x), (_WEIGHTS, cv.w_fwd, _reordered(p.w_fwd, wf, cv.w_fwd)),
                        (_DST, cv.dst, y)])
    return y


def backward_data(g: np.ndarray, wb: np.ndarray, c: int, out: np.ndarray | None = None) -> np.ndarray:
    """The input gradient of :func:`forward` for the output cotangent ``g [N, H, W, K]`` -> ``[N, H, W, c]``
    (written into ``out`` when given)."""
    g = np.ascontiguousarray(g)
    n, h, w, k = g.shape
    dt = _dtype_code(g.dtype)
    cv, p = _conv(n, h, w, c, k, dt), _plan(c, k, dt)
    dx = _out(out, (n, h, w, c), g.dtype)
    _lib().run(cv.bwd, [(_DIFF_DST, cv.dst, g), (_WEIGHTS, cv.w_bwd, _reordered(p.w_bwd, wb, cv.w_bwd)),
                        (_DIFF_SRC, cv.src, dx)])
    return dx


def implementation(n: int, h: int, w: int, c: int, k: int, dtype) -> tuple[str, str]:
    """oneDNN's implementation names for this convolution (e.g. 'brgconv:avx512_core_amx')."""
    return _conv(n, h, w, c, k, _dtype_code(dtype)).impl()
