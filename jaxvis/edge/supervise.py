"""A multi-process run's worker, watched by its launcher, so that a dead peer ends it in one line.

When a peer never joins or stops sending heartbeats, JAX's C++ runtime ends every other process itself
(SIGABRT, with a multi-line log and a stack trace); Python never sees an exception. So ``jaxvis ...
--coordinator ...`` runs its work in a child process (:func:`run_child`) and reads the child's stderr:
ordinary output passes through as it comes; the runtime's log lines are held back, and if the runtime
ends the child, they become one line naming what happened, with exit status 2. The child dies with its
launcher (``PR_SET_PDEATHSIG`` on Linux), so killing the command kills the run.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading

from jaxvis.edge.cluster import Request

CHILD = 'JAXVIS_CLUSTER_WORKER'  # set in the child's environment
_LOG = re.compile(rb'^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ ')
_GLOO = re.compile(rb'^\[Gloo\] ')  # gloo's notes on stdout, one per collective group made
_FATAL = b'Terminating process because the JAX distributed service'


def is_child() -> bool:
    return os.environ.get(CHILD) == '1'


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_child(argv: list[str], req: Request) -> int:
    """Run ``python -m jaxvis argv`` as the worker; returns the exit status to use (2 after a runtime stop)."""
    env = {**os.environ, CHILD: '1'}
    proc = subprocess.Popen([sys.executable, '-m', 'jaxvis', *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=_die_with_parent if sys.platform.startswith('linux') else None)
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child (same process group)
    old_term = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        out = threading.Thread(target=_relay, args=(proc.stdout, sys.stdout.buffer, _GLOO, False),
                               daemon=True)
        out.start()
        held = _relay(proc.stderr, sys.stderr.buffer, _LOG)
        out.join()
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    text = b''.join(held)
    if _FATAL in text or (rc < 0 and held):
        why = summary(text, req)
        again = '' if why.startswith('not all') else ('; finished results are kept: run the same command on '
                                                       'every process to continue')
        sys.stderr.write(f'jaxvis: error: {why}{again}\n')
        return 2
    sys.stderr.buffer.write(text)  # an ordinary end: the runtime's notes are not lost
    sys.stderr.flush()
    return 128 - rc if rc < 0 else rc


def _relay(src, dst, hold: re.Pattern, sticky: bool = True) -> list[bytes]:
    """Copy ``src`` to ``dst`` as it comes, holding back the lines that match ``hold`` (``sticky``: and all
    that follows the first of them); returns the held lines."""
    held: list[bytes] = []
    pending = b''

    def take(part: bytes) -> None:
        if (sticky and held) or hold.match(part):
            held.append(part)
        else:
            dst.write(part)
    for chunk in iter(lambda: os.read(src.fileno(), 65536), b''):
        pending += chunk
        parts = re.split(rb'(?<=[\r\n])', pending)
        pending = parts.pop()  # an unfinished line (a progress bar draws with \r: sent when finished)
        for part in parts:
            take(part)
        dst.flush()
    if pending:
        take(pending)
    dst.flush()
    return held


def summary(log: bytes, req: Request) -> str:
    """One line for the runtime's log ``log`` of a stopped worker."""
    text = log.decode(errors='replace')
    where = req.coordinator or 'the coordinator'
    n = req.num_processes or 'all'
    if 'RegisterTask' in text and 'DEADLINE_EXCEEDED' in text:
        return f'not all {n} processes joined the run at {where} within {req.join_timeout} s'
    m = re.search(r'stopped sending heartbeats\):\s*\n([\d,\s]+?)\n', text)
    if m:
        ids = ', '.join(s for s in re.split(r'[,\s]+', m.group(1)) if s)
        return f'process {ids} of {n} stopped (no heartbeat for {req.peer_timeout} s)'
    if 'leader task' in text or 'Failed to send RPC to coordination service' in text or 'UNAVAILABLE' in text:
        return f'process 0, the coordinator at {where}, stopped or cannot be reached'
    status = re.search(r'absl::Status: ([^\n]{0,160})', text)
    first = status.group(1) if status else text.strip().splitlines()[0].split('] ', 1)[-1][:160]
    return f'the distributed runtime stopped this process ({first})'
