"""A Python function as an XLA FFI handler on CPU, through ``ctypes``: no compiler, no copies.

``jax.pure_callback`` copies every argument and result between XLA's buffers and numpy (for a batch of
8 VGG16 block1 activations, 33 MB in fp32, the copies cost more than oneDNN's convolution); an FFI
handler gets XLA's own buffers. :func:`register` wraps ``fn(args, rets)`` - lists of numpy views of the
argument and result buffers, the results to be written in place - as a C function of XLA's FFI ABI
(``xla/ffi/api/c_api.h``, API 0.x: the call frame, its buffers, the metadata query) and registers it
for ``jax.ffi.ffi_call``. An exception in ``fn`` becomes an XLA error with its message.
"""
from __future__ import annotations

import _thread
import atexit
import ctypes
import threading
import time
from typing import Callable

import jax
import numpy as np

_vp = ctypes.c_void_p
_EXTENSION_METADATA = 1
_ERROR_INTERNAL = 13
_DTYPES = {6: np.dtype(np.uint8), 11: np.dtype(np.float32)}   # XLA_FFI_DataType -> numpy (+ bf16 below)


def _bf16():
    import ml_dtypes   # jax's own dependency
    return np.dtype(ml_dtypes.bfloat16)


_DTYPES[16] = _bf16()


class _Ext(ctypes.Structure):
    _fields_ = [('struct_size', ctypes.c_size_t), ('type', ctypes.c_int), ('next', _vp)]


class _ApiVersion(ctypes.Structure):
    _fields_ = [('struct_size', ctypes.c_size_t), ('extension_start', _vp),
                ('major', ctypes.c_int), ('minor', ctypes.c_int)]


class _Metadata(ctypes.Structure):
    _fields_ = [('struct_size', ctypes.c_size_t), ('api_version', _ApiVersion), ('traits', ctypes.c_uint32)]


class _MetadataExt(ctypes.Structure):
    _fields_ = [('base', _Ext), ('metadata', ctypes.POINTER(_Metadata))]


class _Buffer(ctypes.Structure):
    _fields_ = [('struct_size', ctypes.c_size_t), ('extension_start', _vp), ('dtype', ctypes.c_int),
                ('data', _vp), ('rank', ctypes.c_int64), ('dims', ctypes.POINTER(ctypes.c_int64))]


class _List(ctypes.Structure):   # XLA_FFI_Args and XLA_FFI_Rets
    _fields_ = [('struct_size', ctypes.c_size_t), ('extension_start', _vp), ('size', ctypes.c_int64),
                ('types', _vp), ('ptrs', ctypes.POINTER(_vp))]


class _Attrs(ctypes.Structure):
    _fields_ = [('struct_size', ctypes.c_size_t), ('extension_start', _vp), ('size', ctypes.c_int64),
                ('types', _vp), ('names', _vp), ('attrs', _vp)]


class _CallFrame(ctypes.Structure):
    _fields_ = [('struct_size', ctypes.c_size_t), ('extension_start', ctypes.POINTER(_Ext)), ('api', _vp),
                ('ctx', _vp), ('stage', ctypes.c_int), ('args', _List), ('rets', _List), ('attrs', _Attrs),
                ('future', _vp)]


class _ErrorArgs(ctypes.Structure):
    _fields_ = [('struct_size', ctypes.c_size_t), ('extension_start', _vp), ('message', ctypes.c_char_p),
                ('errc', ctypes.c_int)]


_ERROR_CREATE_OFFSET = 48   # XLA_FFI_Api: struct_size, extension_start, api_version (24 bytes), internal_api
_ErrorCreate = ctypes.CFUNCTYPE(_vp, ctypes.POINTER(_ErrorArgs))
_Handler = ctypes.CFUNCTYPE(_vp, ctypes.POINTER(_CallFrame))
_KEEP: dict[str, object] = {}   # the C function objects, alive as long as the process


def _view(ptr) -> np.ndarray:
    b = ctypes.cast(ptr, ctypes.POINTER(_Buffer)).contents
    dtype = _DTYPES[b.dtype]
    shape = tuple(b.dims[i] for i in range(b.rank))
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = (ctypes.c_uint8 * n).from_address(b.data) if n else bytearray()
    return np.frombuffer(raw, np.uint8).view(dtype).reshape(shape)


def _error(frame: _CallFrame, message: str):
    create = _ErrorCreate(ctypes.cast(frame.api + _ERROR_CREATE_OFFSET, ctypes.POINTER(_vp)).contents.value)
    args = _ErrorArgs(ctypes.sizeof(_ErrorArgs), None, message.encode()[:4000], _ERROR_INTERNAL)
    return create(ctypes.byref(args))


_CALLS = {'active': 0, 'last': 0.0, 'exiting': False}   # handler calls in flight; when the last ended
_CALLS_LOCK = threading.Lock()   # handlers run on several of XLA's threads at once
QUIET_S = 1.0     # at exit, wait until no handler has run for this long (then none is coming)
MAX_WAIT_S = 30.0


def _drain() -> None:
    """At exit: refuse new handler calls (their computations fail fast) and wait until none has run for
    :data:`QUIET_S`. A handler on one of XLA's threads needs the GIL, which the interpreter's shutdown
    holds while it joins those threads: without this, exiting mid-computation (Ctrl-C, a dropped result)
    hangs."""
    _CALLS['exiting'] = True
    end = time.monotonic() + MAX_WAIT_S
    while time.monotonic() < end and (_CALLS['active'] or time.monotonic() - _CALLS['last'] < QUIET_S):
        time.sleep(0.02)


def register(name: str, fn: Callable[[list, list], None]) -> None:
    """Register ``fn(args, rets)`` as the CPU FFI target ``name`` (once per process; again: no-op)."""
    if name in _KEEP:
        return
    if not _KEEP:
        atexit.register(_drain)

    def handler(frame_ptr):
        frame = frame_ptr.contents
        if frame.extension_start and frame.extension_start.contents.type == _EXTENSION_METADATA:
            meta = ctypes.cast(frame.extension_start, ctypes.POINTER(_MetadataExt)).contents.metadata.contents
            meta.api_version.major, meta.api_version.minor, meta.traits = 0, 1, 0
            return None
        if _CALLS['exiting']:
            return _error(frame, f'{name}: Python is exiting')
        with _CALLS_LOCK:
            _CALLS['active'] += 1
        try:
            fn([_view(frame.args.ptrs[i]) for i in range(frame.args.size)],
               [_view(frame.rets.ptrs[i]) for i in range(frame.rets.size)])
        except BaseException as e:  # noqa: BLE001 - every failure goes back to XLA as its error (a return
            if isinstance(e, KeyboardInterrupt):   # would say the results were written); Ctrl-C is passed on
                _thread.interrupt_main()
            return _error(frame, f'{name}: {type(e).__name__}: {e}')
        finally:
            with _CALLS_LOCK:
                _CALLS['active'] -= 1
                _CALLS['last'] = time.monotonic()
        return None

    c_fn = _Handler(handler)
    _KEEP[name] = c_fn
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(c_fn), platform='cpu')
