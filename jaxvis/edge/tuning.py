"""The measured convolution plan kept on disk: ``<jaxvis cache>/tune.json``, one table per CPU model
and jax version (:mod:`jaxvis.backend.tune` measures; this keeps what it measured)."""
from __future__ import annotations

import json
from pathlib import Path

from jaxvis.backend import tune
from jaxvis.edge.files import write_json
from jaxvis.edge.locations import cache_dir


def path() -> Path:
    return cache_dir() / 'tune.json'


def use_disk_cache() -> bool:
    """Load this machine's table from the cache folder (if there) and keep every later measurement
    there; returns whether a table was loaded. Library users call it once to measure once per machine."""
    try:
        loaded = tune.load(json.loads(path().read_text()))
    except (OSError, ValueError):
        loaded = False
    tune.keep_with(save)
    return loaded


def save(table: dict | None = None) -> Path | None:
    """Write ``table`` (default: the in-memory one) to the cache folder atomically; None if it cannot
    be written (then the next process measures again)."""
    try:
        path().parent.mkdir(parents=True, exist_ok=True)
        write_json(str(path()), tune.table() if table is None else table)
    except OSError:
        return None
    return path()
