"""How much memory the device that runs jaxvis has, and a one-line refusal of work that cannot fit.

A device's own limit where JAX reports one (``memory_stats()['bytes_limit']`` on GPU/TPU), else, for
the CPU, the machine's physical memory (``sysconf``). Nothing here knows about models.
"""
from __future__ import annotations

import os

import jax

from jaxvis.errors import JaxvisError


def _stats(device) -> dict:
    """``device.memory_stats()``, or {} for a backend without them."""
    try:
        return device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory stats
        return {}


def memory_bytes(device=None) -> int | None:
    """Bytes of memory of ``device`` (default: JAX's first device), or None where nothing says."""
    device = device or jax.devices()[0]
    stats = _stats(device)
    if stats.get('bytes_limit'):
        return int(stats['bytes_limit'])
    if device.platform == 'cpu':
        try:
            return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
        except (ValueError, OSError, AttributeError):
            return None
    return None


def accelerator_batch(image_bytes: int, multiple: int = 8, device=None, *, low: int = 8, high: int = 1024) -> int:
    """Images per device call on an accelerator: a quarter of its free memory (``memory_stats()``'s
    ``bytes_limit - bytes_in_use``) over 4x ``image_bytes`` (one image's activations: the forward pass,
    its gradient and the optimizer's state), a multiple of ``multiple`` in ``[low, high]``; ``low`` where
    the device reports nothing."""
    stats = _stats(device or jax.local_devices()[0])
    free = int(stats.get('bytes_limit', 0)) - int(stats.get('bytes_in_use', 0))
    if free <= 0 or image_bytes <= 0:
        return low
    n = free // 4 // (4 * image_bytes) // multiple * multiple
    return int(min(high, max(low, n)))


def check_fits(what: str, nbytes: int, device=None) -> None:
    """Raise JaxvisError if ``nbytes`` (a lower bound of what ``what`` needs) exceeds the device's memory."""
    limit = memory_bytes(device)
    if limit is not None and nbytes > limit:
        platform = (device or jax.devices()[0]).platform
        raise JaxvisError(f'{what} needs at least {_gib(nbytes)} of memory, more than this {platform} device '
                          f'has ({_gib(limit)}); use a smaller size')


def _gib(n: int) -> str:
    return f'{n / 2**30:.1f} GiB' if n >= 2**30 else f'{n / 2**20:.1f} MiB'
