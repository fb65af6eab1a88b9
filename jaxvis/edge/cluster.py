"""Joining a multi-process run: the ``--coordinator/--num-processes/--process-id`` flags, JAX's own cluster
detection, and ``jax.distributed.initialize`` with jaxvis's timeouts.

``initialize`` is called only when the flags, ``JAX_COORDINATOR_ADDRESS`` or a cluster that JAX detects
(Cloud TPU, SLURM, Open MPI, Kubernetes; with more than one process) ask for it; a plain run never
touches the distributed runtime.
"""
from __future__ import annotations

import argparse
import os
from typing import NamedTuple

from jaxvis.errors import JaxvisError

JOIN_TIMEOUT = 120  # s to wait for every process to join (JAX's default: 300)
PEER_TIMEOUT = 60   # s without a heartbeat before a process counts as dead (JAX's default: 100)


class Request(NamedTuple):
    """What the command line asks for. ``None`` fields are left to JAX's cluster detection."""

    coordinator: str | None
    num_processes: int | None
    process_id: int | None
    join_timeout: int
    peer_timeout: int


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group('many hosts (JAX distributed runtime; see the README)')
    g.add_argument('--coordinator', default=None, metavar='HOST:PORT',
                   help="process 0's address; the same on every process (or JAX_COORDINATOR_ADDRESS)")
    g.add_argument('--num-processes', type=int, default=None, metavar='N', help='processes in the run')
    g.add_argument('--process-id', type=int, default=None, metavar='I', help="this process's index, 0..N-1")
    g.add_argument('--join-timeout', type=int, default=JOIN_TIMEOUT, metavar='S',
                   help=f'seconds to wait for every process to join (default {JOIN_TIMEOUT})')
    g.add_argument('--peer-timeout', type=int, default=PEER_TIMEOUT, metavar='S',
                   help=f'seconds without a heartbeat before a process counts as dead (default {PEER_TIMEOUT})')


def detected_cluster() -> tuple[str, int] | None:
    """``(name, process count)`` of the cluster JAX's own detection finds here with more than one process,
    else None (also when this JAX has no such detection)."""
    try:
        from jax._src.clusters import ClusterEnv
    except ImportError:
        return None
    for env in ClusterEnv._cluster_types:
        try:
            if env.opt_in_only_method or not env.is_env_present():
                continue
            count = int(env.get_process_count())
        except Exception:  # a detector that cannot answer here is no cluster
            continue
        if count > 1:
            return getattr(env, 'name', env.__name__), count
    return None


def request(args: argparse.Namespace) -> Request | None:
    """The multi-process run ``args`` asks for, or None for a plain single-process run.

    Raises JaxvisError: flags given only in part, a process id out of range, a bad address or timeout.
    """
    coordinator = args.coordinator or os.environ.get('JAX_COORDINATOR_ADDRESS') or None
    n, i = args.num_processes, args.process_id
    found = detected_cluster() if coordinator is None and n is None and i is None else None
    if coordinator is None and n is None and i is None and found is None:
        return None
    for name, value in (('--join-timeout', args.join_timeout), ('--peer-timeout', args.peer_timeout)):
        if value < 1:
            raise JaxvisError(f'{name} must be >= 1 second, got {value}')
    if found is None:
        missing = [flag for flag, v in (('--coordinator', coordinator), ('--num-processes', n),
                                        ('--process-id', i)) if v is None]
        if missing:
            raise JaxvisError(f'a multi-process run needs --coordinator HOST:PORT, --num-processes N and '
                              f'--process-id I (missing: {", ".join(missing)})')
        host, _, port = coordinator.rpartition(':')
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise JaxvisError(f'bad --coordinator {coordinator!r}: use HOST:PORT, e.g. 10.0.0.1:8476')
        if n < 1:
            raise JaxvisError(f'--num-processes must be >= 1, got {n}')
        if not 0 <= i < n:
            raise JaxvisError(f'--process-id must be in 0..{n - 1}, got {i}')
    return Request(coordinator, n, i, args.join_timeout, args.peer_timeout)


def join(req: Request) -> None:
    """``jax.distributed.initialize`` with ``req``'s timeouts. A peer that never joins or dies later makes
    JAX's runtime end this process (see :mod:`jaxvis.edge.supervise`, which turns that into one line)."""
    import jax
    jax.distributed.initialize(req.coordinator, req.num_processes, req.process_id,
                               initialization_timeout=req.join_timeout,
                               heartbeat_timeout_seconds=req.peer_timeout,
                               shutdown_timeout_seconds=req.peer_timeout)
