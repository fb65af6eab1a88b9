"""The files side of a multi-process run: one lock per process, the same job on every process, whether the
output folder is shared, and files sent to process 0 when it is not (through JAX:
:func:`jaxvis.backend.hosts.gather_bytes`). In a single process each of these is a no-op or trivial.
"""
from __future__ import annotations

import json
import os
import socket
import struct

from jaxvis.backend import hosts
from jaxvis.edge import store
from jaxvis.edge.files import atomic_path
from jaxvis.errors import JaxvisError

MARK = '.jaxvis.host'


def lock_name() -> str:
    """Process 0 (and a single process) holds ``.jaxvis.lock``; process ``i`` holds ``.jaxvis.lock.<i>``,
    so the processes of one run can share a folder while a second run into it is still held off."""
    i = hosts.process_index()
    return store.LOCK if i == 0 else f'{store.LOCK}.{i}'


def check_same_job(job: dict) -> None:
    """Refuse, on every process, a run whose processes were started with different configurations.

    Raises JaxvisError naming the processes and the fields that differ from process 0's.
    """
    if hosts.process_count() == 1:
        return
    jobs = [json.loads(b) for b in hosts.gather_bytes(json.dumps(job, sort_keys=True, default=str).encode())]
    bad = {i: sorted(k for k in set(j) | set(jobs[0]) if j.get(k) != jobs[0].get(k)) for i, j in enumerate(jobs)}
    bad = {i: d for i, d in bad.items() if d}
    if bad:
        what = '; '.join(f'process {i} differs from process 0 in: {", ".join(d)}' for i, d in bad.items())
        raise JaxvisError(f'every process must run the same command: {what}')


def shared_folder(out: str) -> bool:
    """Whether every process sees the same ``out`` (one machine, or a shared filesystem): each writes a
    marker named by its index and checks it sees every other's, with the contents they sent through JAX."""
    if hosts.process_count() == 1:
        return True
    i = hosts.process_index()
    token = f'{socket.gethostname()} {os.getpid()} {os.urandom(8).hex()}'
    mine = os.path.join(out, f'{MARK}.{i}')
    with open(mine, 'w') as f:
        f.write(token)
    tokens = [t.decode() for t in hosts.gather_bytes(token.encode())]
    seen = all(_read(os.path.join(out, f'{MARK}.{j}')) == t for j, t in enumerate(tokens))
    answers = hosts.gather_bytes(b'1' if seen else b'0')
    os.remove(mine)
    return all(a == b'1' for a in answers)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def pack(files: dict[str, bytes]) -> bytes:
    """``{relative path: bytes}`` as one byte string (a JSON header of names and lengths, then the bytes)."""
    head = json.dumps([[name, len(b)] for name, b in files.items()]).encode()
    return struct.pack('<Q', len(head)) + head + b''.join(files.values())


def unpack(data: bytes) -> dict[str, bytes]:
    """The inverse of :func:`pack`."""
    if not data:
        return {}
    (n,) = struct.unpack('<Q', data[:8])
    out, pos = {}, 8 + n
    for name, size in json.loads(data[8:8 + n]):
        out[name] = data[pos:pos + size]
        pos += size
    return out


def read_files(out: str, names) -> dict[str, bytes]:
    result = {}
    for name in names:
        with open(os.path.join(out, name), 'rb') as f:
            result[name] = f.read()
    return result


def write_files(out: str, files: dict[str, bytes]) -> None:
    """Write each file under ``out`` atomically (paths are relative and must stay inside ``out``)."""
    root = os.path.realpath(out)
    for name, data in files.items():
        path = os.path.realpath(os.path.join(root, name))
        if not path.startswith(root + os.sep):
            raise JaxvisError(f'a process sent a file outside the output folder: {name!r}')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, 'wb') as f:
                f.write(data)
