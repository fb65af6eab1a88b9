"""The filter axis spread over devices: a 1-D mesh named 'filters', batches padded to its size.

Each filter's image depends only on its own key and index (see :mod:`jaxvis.visualize.start`), so a batch of
filters splits over devices with no communication: :func:`shard_batched` runs the ``vmap``-ed step under
``shard_map`` on each device's slice. The engine gives every device the same number of images, in groups
of the same width (:func:`in_groups`), so on XLA:CPU the results are bit for bit those of one device
(tests/test_sharding.py).
Many processes: the mesh here is built from *local* devices only; :mod:`jaxvis.backend.hosts` gives each
process its own block of filters.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxvis.backend import xla
from jaxvis.errors import JaxvisError

AXIS = 'filters'
Devices = None | str | Sequence[jax.Device]


def resolve_devices(devices: Devices = None) -> list[jax.Device]:
    """The devices a batch is spread over.

    ``None`` or ``'all'``: every local device of the default backend; a sequence: those devices.
    Raises JaxvisError for an empty sequence, a repeated device or an unknown string.
    """
    if devices is None or (isinstance(devices, str) and devices == 'all'):
        return list(jax.local_devices())
    if isinstance(devices, str):
        raise JaxvisError(f"devices must be None, 'all' or a list of jax devices, got {devices!r}")
    devs = list(devices)
    if not devs:
        raise JaxvisError('devices is empty')
    if len(set(devs)) != len(devs):
        raise JaxvisError('devices has repeats')
    return devs


def filter_mesh(devices: Devices = None) -> Mesh | None:
    """A 1-D ``Mesh`` over ``devices`` with axis ``'filters'``, or None when that is a single device."""
    devs = resolve_devices(devices)
    return None if len(devs) == 1 else Mesh(np.asarray(devs), (AXIS,))


def platform(mesh: Mesh | None) -> str:
    """The platform ('cpu', 'gpu', 'tpu') of ``mesh``'s devices, or of the default local device."""
    return (jax.local_devices() if mesh is None else mesh.devices.flat)[0].platform


def shard(tree, mesh: Mesh | None):
    """Put every leaf of ``tree`` on ``mesh`` split along its leading (filter) axis; no-op without a mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, P(AXIS)))


def replicate(tree, mesh: Mesh | None):
    """Put every leaf of ``tree`` (e.g. the params) whole on each device of ``mesh``; no-op without a mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batched(fn: Callable, in_axes: Sequence[int | None], mesh: Mesh | None,
                  width: int | None = None, dtype: str = 'float32', vmapped: bool = True) -> Callable:
    """``jit(vmap(fn, in_axes))``, and with a mesh, under ``shard_map`` on the filter axis; with
    ``vmapped`` False, ``fn`` takes the batch itself (``jit(fn)``: it must treat the images independently).

    Arguments with ``in_axes`` 0 are split across devices (their leading size must be a multiple of
    ``mesh.size``), those with None are replicated; every output is split along its leading axis.
    With ``width``, each device runs its share as ``lax.map`` over groups of ``width`` (its share must be
    a multiple of it): every operation then sees the same shape whatever the share, which on XLA:CPU
    makes the results independent of the batch size, bit for bit. ``dtype``: the network's precision
    (:func:`jaxvis.backend.xla.compiler_options`).
    """
    batched = jax.vmap(fn, in_axes=tuple(in_axes)) if vmapped else fn
    if width is not None:
        batched = in_groups(batched, in_axes, width)
    jit = functools.partial(jax.jit, compiler_options=xla.compiler_options(platform(mesh), dtype))
    if mesh is None:
        return jit(batched)
    specs = tuple(P() if a is None else P(AXIS) for a in in_axes)
    return jit(jax.shard_map(batched, mesh=mesh, in_specs=specs, out_specs=P(AXIS)))


def in_groups(fn: Callable, in_axes: Sequence[int | None], width: int) -> Callable:
    """``fn`` (batched along axis 0 of the arguments whose ``in_axes`` is 0) applied to consecutive groups
    of ``width``, unrolled (a ``lax.map`` loop body compiles to other rounding); the outputs are
    concatenated back. A share of exactly ``width`` is one call."""
    def grouped(*args):
        n = next(jax.tree_util.tree_leaves(a)[0].shape[0] for a, ax in zip(args, in_axes) if ax == 0)
        if n == width:
            return fn(*args)

        def group(lo):
            return fn(*(a if ax is None else jax.tree_util.tree_map(lambda v: v[lo:lo + width], a)
                        for a, ax in zip(args, in_axes)))

        outs = [group(lo) for lo in range(0, n, width)]
        return jax.tree_util.tree_map(lambda *v: jnp.concatenate(v), *outs)
    return grouped
