"""A results folder that a job can be stopped in and continued in: one writer at a time, one configuration
per folder, and a record per finished chunk.

* :func:`lock` holds ``<out>/.jaxvis.lock`` with ``fcntl.flock`` for the whole run: a second process
  writing to the same folder gets one JaxvisError; the kernel releases the lock when the holder exits
  or dies (SIGKILL included), so a crash leaves no stale lock to clean up.
* :func:`claim` writes ``<out>/job.json`` (what was asked, with a fingerprint) or checks it: the same
  configuration continues, another one is refused unless ``overwrite``.
* A chunk is finished when ``<out>/chunks/<name>.json`` exists: its files are written (atomically) first
  and its record last, so a chunk stopped half-way is simply computed again.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from contextlib import contextmanager

from jaxvis.edge.files import check_out_dir, write_json
from jaxvis.errors import JaxvisError

LOCK = '.jaxvis.lock'
JOB = 'job.json'
CHUNKS = 'chunks'


@contextmanager
def lock(out: str, name: str = LOCK):
    """Hold ``out``'s lock (the file ``name`` in it) for the block. Raises JaxvisError if another process
    holds it."""
    check_out_dir(out)
    path = os.path.join(out, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise
            holder = os.pread(fd, 64, 0).decode(errors='replace').strip() or 'another process'
            raise JaxvisError(f'{out} is in use by {holder} (lock {path}); wait for it to finish or use '
                              'another --out') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'jaxvis pid {os.getpid()}\n'.encode(), 0)
        if name == LOCK:  # the first holder (process 0 of a run): no writer is at work here yet
            remove_stale_parts(out)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def remove_stale_parts(out: str) -> None:
    """Remove the temporary files (``.<name>.<random>.part``, :func:`jaxvis.edge.files.atomic_path`) that a
    killed writer left under ``out``; they were never moved into place, so no result is lost."""
    for folder, _, names in os.walk(out):
        for name in names:
            if name.startswith('.') and name.endswith('.part'):
                try:
                    os.remove(os.path.join(folder, name))
                except FileNotFoundError:
                    pass


def claim(out: str, job: dict, fingerprint: str, *, overwrite: bool = False) -> bool:
    """Make ``out`` hold the job ``job`` (JSON-friendly) whose identity is ``fingerprint``.

    Returns True if ``out`` already held this job (its finished chunks are kept). A folder holding
    another job is refused (JaxvisError naming the fields that differ) unless ``overwrite``, which
    forgets its finished chunks. Call it while holding :func:`lock`.
    """
    path = os.path.join(out, JOB)
    old = read_json(path)
    if old is not None and old.get('fingerprint') == fingerprint:
        return True
    if old is not None and not overwrite:
        prev = old.get('job', {})
        differ = sorted(k for k in set(prev) | set(job) if prev.get(k) != job.get(k)) or ['fingerprint']
        raise JaxvisError(f'{out} holds results of another configuration (differs in: {", ".join(differ)}); '
                          'pass --overwrite to replace them, or use another --out')
    shutil.rmtree(os.path.join(out, CHUNKS), ignore_errors=True)
    write_json(path, {'fingerprint': fingerprint, 'job': job})
    return False


def finished(out: str, name: str) -> dict | None:
    """The record of chunk ``name`` if it finished, else None."""
    return read_json(os.path.join(out, CHUNKS, f'{name}.json'))


def finish(out: str, name: str, record: dict) -> None:
    """Mark chunk ``name`` finished with ``record`` (after its files are written)."""
    os.makedirs(os.path.join(out, CHUNKS), exist_ok=True)
    write_json(os.path.join(out, CHUNKS, f'{name}.json'), record)


def read_json(path: str) -> dict | None:
    """A JSON file's content, or None if it does not exist or is not valid JSON (a foreign file)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
