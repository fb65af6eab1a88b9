"""oneDNN's 3x3 convolutions on the host, through ``ctypes``: the CPU convolutions PyTorch runs.

XLA:CPU's convolutions reach neither AMX nor oneDNN (docs/performance.md, "The Intel AMX kind"); oneDNN's
run 1.4-6x faster on a 2-core Xeon with AMX (bf16 1400-3400 GFLOP/s against XLA's 200-260). This module
loads ``libdnnl.so.3`` (the ``onednn-cpu-gomp`` wheel puts it in ``<prefix>/lib``; ``JAXVIS_ONEDNN`` names
another file, ``JAXVIS_ONEDNN=0`` turns it off) and runs a 3x3 'SAME' stride-1 convolution forward and
its input gradient (backward data) on numpy arrays (:func:`run`): NHWC images, the kernel in oneDNN's own
blocked layout (:func:`prepare`, once per job). :mod:`jaxvis.models.onednn_conv` calls it from a jitted step.
Pure functions of their inputs: the same arrays give the same bytes (oneDNN's forward and backward-data
convolutions reduce in a fixed order); nothing here is global but the library and cached primitives,
which take scratch memory from the caller (the library's own is per creating thread: :class:`_Lib`).
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
_SCRATCHPAD_USER = 1                                     # dnnl_scratchpad_mode_t
_Q_WEIGHTS, _Q_SCRATCHPAD, _Q_IMPL = 131, 136, 8         # dnnl_query_t
_SRC, _DST, _WEIGHTS, _SCRATCHPAD, _DIFF_SRC, _DIFF_DST = 1, 17, 33, 80, 129, 145   # DNNL_ARG_*
PLAN_SHAPE = (8, 16)   # (images, side) whose kernel layout prepare() writes; other shapes reorder from it
DIRECTIONS = ('forward', 'backward_data')

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


class _Prim:
    """A primitive and the bytes of scratch memory it takes from the caller."""

    def __init__(self, lib: '_Lib', pd: _vp):
        self.pd, self.handle = pd, _vp()
        lib.ok(lib.dll.dnnl_primitive_create(ctypes.byref(self.handle), pd), 'primitive')
        self.scratch_md = _vp(lib.dll.dnnl_primitive_desc_query_md(pd, _Q_SCRATCHPAD, 0))
        self.scratch = _size(self.scratch_md) if self.scratch_md else 0


class _Lib:
    """The loaded library, one CPU engine and stream, the primitives' attributes (user scratchpad: XLA runs
    them on its threads, where a ``gemm:jit`` one failed with the library's per-thread scratchpad,
    ``tests/test_onednn.py``) and one scratch buffer; calls into it hold a lock (one stream, one buffer)."""

    def __init__(self, path: str):
        self.dll = dll = ctypes.CDLL(path)
        dll.dnnl_primitive_desc_query_md.restype = _vp
        dll.dnnl_primitive_desc_query_md.argtypes = [_vp, ctypes.c_int, ctypes.c_int]
        dll.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        dll.dnnl_memory_desc_get_size.argtypes = [_vp]
        dll.dnnl_memory_desc_equal.argtypes = [_vp, _vp]
        self.engine, self.stream, self.attr = _vp(), _vp(), _vp()
        self.ok(dll.dnnl_engine_create(ctypes.byref(self.engine), _CPU, 0), 'engine')
        self.ok(dll.dnnl_stream_create(ctypes.byref(self.stream), self.engine, _STREAM_DEFAULT), 'stream')
        self.ok(dll.dnnl_primitive_attr_create(ctypes.byref(self.attr)), 'attributes')
        self.ok(dll.dnnl_primitive_attr_set_scratchpad_mode(self.attr, _SCRATCHPAD_USER), 'scratchpad mode')
        self.lock = threading.Lock()
        self.scratch = np.empty(0, np.uint8)

    @staticmethod
    def ok(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f'oneDNN {what} failed (dnnl_status_t {status})')

    def md(self, dims, dtype: int, tag: int) -> _vp:
        m = _vp()
        self.ok(self.dll.dnnl_memory_desc_create_with_tag(ctypes.byref(m), len(dims), _Dims(*dims), dtype, tag),
                'memory descriptor')
        return m

    def run(self, prim: _Prim, args: list[tuple[int, _vp, np.ndarray]]) -> None:
        """Execute ``prim`` on ``(DNNL_ARG_*, memory descriptor, array)`` triples and wait."""
        mems = []
        with self.lock:
            if prim.scratch:
                if self.scratch.size < prim.scratch:
                    self.scratch = np.empty(prim.scratch, np.uint8)
                args = args + [(_SCRATCHPAD, prim.scratch_md, self.scratch)]
            try:
                for _, md, arr in args:
                    m = _vp()
                    self.ok(self.dll.dnnl_memory_create(ctypes.byref(m), md, self.engine, _vp(arr.ctypes.data)),
                            'memory')
                    mems.append(m)
                table = (_Arg * len(args))(*[_Arg(a, m) for (a, _, _), m in zip(args, mems)])
                self.ok(self.dll.dnnl_primitive_execute(prim.handle, self.stream, len(args), table), 'execute')
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


class _Step:
    """One direction of a convolution: its primitive, the (argument, descriptor) it reads and writes, its
    kernel's layout and that layout's bytes."""

    def __init__(self, lib: _Lib, pd: _vp, read: tuple[int, _vp], write: tuple[int, _vp]):
        self.prim, self.read, self.write = _Prim(lib, pd), read, write
        self.weights = _vp(lib.dll.dnnl_primitive_desc_query_md(pd, _Q_WEIGHTS, 0))
        self.size = _size(self.weights)


class _Conv:
    """Forward and backward-data steps for ``[n, h, w, c] -> [n, h, w, k]`` in one dtype."""

    def __init__(self, lib: _Lib, n: int, h: int, w: int, c: int, k: int, dt: int):
        d = lib.dll
        src, dst = lib.md([n, c, h, w], dt, _NHWC), lib.md([n, k, h, w], dt, _NHWC)
        wany = lib.md([k, c, 3, 3], dt, _ANY)
        one, zero = _Dims(1, 1), _Dims(0, 0)
        fpd, bpd = _vp(), _vp()
        lib.ok(d.dnnl_convolution_forward_primitive_desc_create(
            ctypes.byref(fpd), lib.engine, _FWD_TRAINING, _DIRECT, src, wany, None, dst,
            one, zero, one, one, lib.attr), 'convolution forward descriptor')
        lib.ok(d.dnnl_convolution_backward_data_primitive_desc_create(
            ctypes.byref(bpd), lib.engine, _DIRECT, src, wany, dst, one, zero, one, one,
            fpd, lib.attr), 'convolution backward-data descriptor')
        self.steps = {'forward': _Step(lib, fpd, (_SRC, src), (_DST, dst)),
                      'backward_data': _Step(lib, bpd, (_DIFF_DST, dst), (_DIFF_SRC, src))}
        self.hwio = lib.md([k, c, 3, 3], dt, _HWIO)


@functools.cache
def _conv(n: int, h: int, w: int, c: int, k: int, dt: int) -> _Conv:
    return _Conv(_lib(), n, h, w, c, k, dt)


@functools.cache
def _reorder(src_md: int, dst_md: int) -> _Prim:
    lib, pd = _lib(), _vp()
    lib.ok(lib.dll.dnnl_reorder_primitive_desc_create(ctypes.byref(pd), _vp(src_md), lib.engine, _vp(dst_md),
                                                      lib.engine, lib.attr), 'reorder descriptor')
    return _Prim(lib, pd)


def _size(md: _vp) -> int:
    return int(_lib().dll.dnnl_memory_desc_get_size(md))   # called once the library loaded


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
    """Bytes of :func:`prepare`'s two arrays (forward, backward data) for ``c -> k`` channels in ``dtype``."""
    return tuple(s.size for s in _plan(c, k, _dtype_code(dtype)).steps.values())


def prepare(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel ``w [3, 3, C, K]`` (float32 or bfloat16) in oneDNN's layouts for the forward and the
    backward-data convolution at :data:`PLAN_SHAPE`: two flat ``uint8`` arrays."""
    w = np.ascontiguousarray(w)
    p = _plan(w.shape[2], w.shape[3], _dtype_code(w.dtype))
    return tuple(_reordered(p.hwio, w, s.weights).reshape(-1).view(np.uint8) for s in p.steps.values())


def run(direction: str, x: np.ndarray, kern: np.ndarray, out: np.ndarray) -> np.ndarray:
    """One step of a 3x3 'SAME' convolution, written into ``out`` (returned): 'forward' maps the image
    ``x [N, H, W, C]`` to ``out [N, H, W, K]``; 'backward_data' maps the output cotangent ``x [N, H, W, K]``
    to the input gradient ``out [N, H, W, C]``. ``kern``: :func:`prepare`'s uint8 array for that
    direction (trailing bytes beyond it, padding, are ignored); x and out in one dtype (float32, bfloat16)."""
    if direction not in DIRECTIONS:
        raise ValueError(f'direction must be one of {DIRECTIONS}, got {direction!r}')
    x = np.ascontiguousarray(x)
    if out.shape[:-1] != x.shape[:-1] or out.dtype != x.dtype or not out.flags.c_contiguous or x.ndim != 4:
        raise ValueError(f'out must be a C-contiguous {x.dtype} array of shape {x.shape[:-1]} + (channels,), '
                         f'x 4-d; got x {x.shape} and out {out.dtype} {out.shape}')
    (n, h, w), dt = x.shape[:3], _dtype_code(x.dtype)
    c, k = (x.shape[-1], out.shape[-1]) if direction == 'forward' else (out.shape[-1], x.shape[-1])
    step, planned = _conv(n, h, w, c, k, dt).steps[direction], _plan(c, k, dt).steps[direction]
    if (kern := kern.reshape(-1)).dtype != np.uint8 or kern.size < planned.size:
        raise ValueError(f'the prepared kernel holds {kern.size} {kern.dtype} values, oneDNN needs {planned.size} bytes')
    wts = _reordered(planned.weights, kern[:planned.size], step.weights)   # prepare()'s layout, or reordered
    _lib().run(step.prim, [(step.read[0], step.read[1], x), (_WEIGHTS, step.weights, wts),
                           (step.write[0], step.write[1], out)])
    return out


def implementation(n: int, h: int, w: int, c: int, k: int, dtype) -> tuple[str, str]:
    """oneDNN's implementation names for this convolution, forward and backward data (e.g.
    'brgconv:avx512_core_amx')."""
    names = []
    for step in _conv(n, h, w, c, k, _dtype_code(dtype)).steps.values():
        s = ctypes.c_char_p()
        _lib().dll.dnnl_primitive_desc_query(step.prim.pd, _Q_IMPL, 0, ctypes.byref(s))
        names.append(s.value.decode())
    return tuple(names)
