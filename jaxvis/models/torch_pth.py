"""Reading a PyTorch state dict (``.pth``) without torch, and without running any code it may carry.

A ``.pth`` is a pickle, and a pickle can name any Python callable to run while it loads. This reader
rebuilds exactly the four globals a state dict of float and int64 tensors needs and refuses every
other one before anything is called:

* ``collections.OrderedDict`` (the state dict itself; torch adds a ``_metadata`` attribute to it);
* ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])``,
  answered by a NumPy view of the storage;
* ``torch.FloatStorage`` (float32) and ``torch.LongStorage`` (int64, BatchNorm's ``num_batches_tracked``),
  named by the storages' persistent ids ``('storage', type, key, location, numel[, view])``.

Both of torch's formats are read:

* legacy (torch < 1.6, and ``_use_new_zipfile_serialization=False``): five pickles and raw bytes in a
  row: the magic number, the protocol version (1001), the sys-info dict (byte order, type sizes), the
  state dict, the list of storage keys; then each storage in that order as an 8-byte element count
  followed by its elements;
* zip (``torch.save`` since 1.6): ``<prefix>/data.pkl`` (the state dict) and ``<prefix>/data/<key>``
  (one storage each, raw), ``<prefix>/byteorder``.

:func:`load_pth` returns ``{name: numpy array}`` (float32 / int64, C-contiguous, copied). Any other
content, a truncated file or a refused global raises :class:`jaxvis.errors.WeightsError` in one line.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import NamedTuple

import numpy as np

from jaxvis.errors import WeightsError

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
STORAGES = {'FloatStorage': 'f4', 'LongStorage': 'i8'}
ALLOWED = ('collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', 'torch.FloatStorage', 'torch.LongStorage')


class _Refused(Exception):
    """A global outside :data:`ALLOWED`, or a value of the wrong form."""


class _Storage(NamedTuple):
    kind: str   # 'FloatStorage' or 'LongStorage'
    key: str
    numel: int


class _Tensor(NamedTuple):
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


class _StorageType(NamedTuple):
    name: str


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """Stands in for torch's: records where the tensor's elements are; reads nothing."""
    ints = lambda t: isinstance(t, tuple) and all(type(v) is int and v >= 0 for v in t)
    if not isinstance(storage, _Storage) or type(offset) is not int or not ints(size) or not ints(stride) \
            or len(size) != len(stride):
        raise _Refused('a tensor of an unexpected form')
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Globals: the four of :data:`ALLOWED` only (``allow=False``: none); persistent ids: storages."""

    def __init__(self, data: bytes | io.BufferedIOBase, *, allow: bool):
        super().__init__(io.BytesIO(data) if isinstance(data, bytes) else data)
        self.allow = allow
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        full = f'{module}.{name}'
        if not self.allow or full not in ALLOWED:
            raise _Refused(f'it asks for {full}, which a state dict never needs')
        if full == 'collections.OrderedDict':
            return collections.OrderedDict
        if full == 'torch._utils._rebuild_tensor_v2':
            return _rebuild_tensor_v2
        return _StorageType(name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == 'storage'
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and type(pid[4]) is int):
            raise _Refused('a persistent id that is not a storage')
        if len(pid) == 6 and pid[5] is not None:
            raise _Refused('a storage view (torch < 0.4), which is not supported')
        storage = _Storage(pid[1].name, pid[2], pid[4])
        if self.storages.setdefault(storage.key, storage) != storage:
            raise _Refused(f'storage {storage.key} declared twice with different types or sizes')
        return storage


def load_pth(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{tensor name: array}`` of a PyTorch state dict file, legacy or zip format, read without torch.

    Raises:
      WeightsError: missing file, not a ``.pth``, truncated, a global other than the four a state dict
        needs (the file is refused before anything in it runs), or anything but a dict of tensors.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return _zip(z)
        with open(path, 'rb') as f:
            return _legacy(f)
    except _Refused as e:
        raise WeightsError(f'{path}: refused: {e} (jaxvis reads only {", ".join(ALLOWED)})') from None
    except FileNotFoundError:
        raise WeightsError(f'{path}: no such weights file') from None
    except IsADirectoryError:
        raise WeightsError(f'{path}: is a folder, not a .pth file') from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, struct.error,
            zipfile.BadZipFile, OSError, MemoryError, RecursionError, AttributeError) as e:
        raise WeightsError(f'{path}: not a readable PyTorch state dict (truncated or corrupt: '
                           f'{type(e).__name__}{": " + str(e).splitlines()[0] if str(e) else ""})') from None


def _legacy(f) -> dict[str, np.ndarray]:
    if _Unpickler(f, allow=False).load() != MAGIC:
        raise ValueError('no PyTorch magic number at the start')
    if _Unpickler(f, allow=False).load() != PROTOCOL:
        raise ValueError(f'not serialization protocol {PROTOCOL}')
    info = _Unpickler(f, allow=False).load()
    if not isinstance(info, dict) or not isinstance(info.get('little_endian'), bool):
        raise ValueError('no sys info after the protocol version')
    order = '<' if info['little_endian'] else '>'
    main = _Unpickler(f, allow=True)
    tensors = main.load()
    keys = _Unpickler(f, allow=False).load()
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(main.storages):
        raise ValueError('the storage key list does not match the tensors')
    raw = {}
    for key in keys:
        s = main.storages[key]
        (count,) = struct.unpack(order + 'q', _read(f, 8, key))
        if count != s.numel:
            raise ValueError(f'storage {key} holds {count} elements, its tensors say {s.numel}')
        raw[key] = _read(f, count * int(STORAGES[s.kind][1]), key)
    return _arrays(tensors, raw, order)


def _zip(z: zipfile.ZipFile) -> dict[str, np.ndarray]:
    pkls = [n for n in z.namelist() if n.count('/') == 1 and n.endswith('/data.pkl')]
    if len(pkls) != 1:
        raise ValueError(f'a zip with {len(pkls)} <name>/data.pkl records, not a torch.save file')
    prefix = pkls[0][:-len('data.pkl')]
    order = '<'
    if f'{prefix}byteorder' in z.namelist():
        order = {b'little': '<', b'big': '>'}.get(z.read(f'{prefix}byteorder').strip())
        if order is None:
            raise ValueError('unknown byte order')
    main = _Unpickler(z.read(pkls[0]), allow=True)
    tensors = main.load()
    raw = {}
    for key, s in main.storages.items():
        data = z.read(f'{prefix}data/{key}')
        if len(data) != s.numel * int(STORAGES[s.kind][1]):
            raise ValueError(f'storage {key} has {len(data)} bytes, its tensors say {s.numel} elements')
        raw[key] = data
    return _arrays(tensors, raw, order)


def _read(f, n: int, key: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError(f'storage {key} ends after {len(data)} of {n} bytes')
    return data


def _arrays(tensors, raw: dict[str, bytes], order: str) -> dict[str, np.ndarray]:
    """The state dict's tensors as C-contiguous arrays, each index checked against its storage."""
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(t, _Tensor)
                                                for k, t in tensors.items()):
        raise _Refused('content other than a dict of named tensors')
    out = {}
    for name, t in tensors.items():
        dtype = np.dtype(order + STORAGES[t.storage.kind])
        flat = np.frombuffer(raw[t.storage.key], dtype)
        if 0 in t.size:
            out[name] = np.zeros(t.size, dtype.newbyteorder('='))
            continue
        last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
        if last >= flat.size:
            raise ValueError(f'tensor {name} reaches past the end of its storage')
        view = np.lib.stride_tricks.as_strided(flat[t.offset:], t.size, [s * dtype.itemsize for s in t.stride],
                                               writeable=False) if t.size else flat[t.offset]
        out[name] = np.array(view, dtype.newbyteorder('='), order='C').reshape(t.size)
    return out
