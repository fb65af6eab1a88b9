"""Many processes (one per host) in one run, through JAX's own distributed runtime.

After ``jax.distributed.initialize`` every process runs the same program. The filters of a layer are split
over all global devices: process ``p`` takes a contiguous block of them, as many per device as any other
process, and spreads it over its own local devices (:mod:`jaxvis.backend.sharding`). No step waits for a
peer: since a filter's image depends only on its key, its index and the config, and every operation runs on
the same group width per device (``width=``, :data:`jaxvis.visualize.engine.WIDTH` by default), a
process's images are the same bytes as a single-process run's. Only results cross hosts, once per layer, with :func:`gather_bytes`
(``multihost_utils.process_allgather``).

Why not one global mesh with a step launched on every host at once: nothing in the step needs a peer, so
lockstep would only make every host wait for the slowest at every step, and the early drop of dead filters
(:mod:`jaxvis.visualize.schedule`) would need a global exchange to pack the live ones. Here a slow or busy
host delays only the end of the layer.
"""
from __future__ import annotations

import jax
import numpy as np


def process_count() -> int:
    return jax.process_count()


def process_index() -> int:
    return jax.process_index()


def device_counts() -> list[int]:
    """Devices of the default backend per process, by process index."""
    counts = [0] * jax.process_count()
    for d in jax.devices():
        counts[d.process_index] += 1
    return counts


def split(n: int, counts: list[int]) -> list[tuple[int, int]]:
    """``[(lo, hi)]`` per process: contiguous blocks of ``range(n)`` in proportion to each process's
    device count ``counts`` (the same number of items per device, the last blocks possibly shorter or
    empty). Pure: e.g. ``split(10, [2, 2]) == [(0, 6), (6, 10)]``."""
    total = sum(counts)
    per = -(-n // total) if total else 0
    out, lo = [], 0
    for c in counts:
        hi = min(n, lo + per * c)
        out.append((lo, hi))
        lo = hi
    return out


def my_share(n: int) -> slice:
    """The positions among ``n`` filters that this process computes (all of them in a single process)."""
    if jax.process_count() == 1:
        return slice(0, n)
    lo, hi = split(n, device_counts())[jax.process_index()]
    return slice(lo, hi)


def gather_bytes(data: bytes) -> list[bytes]:
    """Every process's ``data``, by process index, on every process (a collective: all must call it).

    Goes through JAX (``multihost_utils.process_allgather`` of the lengths, then of the padded bytes).
    In a single process: ``[data]``.
    """
    if jax.process_count() == 1:
        return [data]
    from jax.experimental import multihost_utils
    lengths = np.asarray(multihost_utils.process_allgather(np.array([len(data)], np.int64))).reshape(-1)
    buf = np.zeros(int(lengths.max()) or 1, np.uint8)
    buf[:len(data)] = np.frombuffer(data, np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(buf)).reshape(len(lengths), -1)
    return [rows[i, :int(lengths[i])].tobytes() for i in range(len(lengths))]


def from_process_0(data: bytes) -> bytes:
    """Process 0's ``data``, on every process."""
    return gather_bytes(data if jax.process_index() == 0 else b'')[0]


def barrier(name: str) -> None:
    """Wait until every process got here (``multihost_utils.sync_global_devices``); no-op in one process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
