"""Which weights file to use: found in the usual places (:mod:`jaxvis.edge.locations`) or fetched
(:mod:`jaxvis.edge.fetch`); and what a file is (name, source, size, sha256) for manifests."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import jax
import numpy as np

from jaxvis.edge.fetch import fetch, find_usable, note
from jaxvis.edge.locations import HED, OFFICIAL, check_model, file_digest, WHEELS, find, names, search_paths
from jaxvis.errors import WeightsError


def resolve(model: str = 'vgg16', weights: str | os.PathLike | None = None, *,
            download: bool = True, progress: bool = True) -> Path:
    """The weights file to use for ``model`` ('vgg16', 'vgg19' or 'efficientnet_lite0'), fetching it if needed.

    Args:
      model: which network the file is for.
      weights: an explicit file (or a folder holding the official file); wins over everything.
      download: if nothing is found, download the official file (and, for VGG16, fall back to HED).
      progress: progress bars and notes on stderr.

    Returns:
      the path of an existing file (not opened: :func:`jaxvis.models.load_keras_h5` checks it).

    A cached file that fails its hash is moved aside and fetched again
    (:func:`jaxvis.edge.locations.find_checked`); an explicit file is never checked or moved.

    Raises:
      WeightsError: the explicit path or ``$JAXVIS_WEIGHTS`` does not exist, or no file was found and
        none could be fetched; the one-line message says what was tried (and what was found damaged,
        where it was moved) and how to place the file.
    """
    check_model(model)
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            found = find(names(model), [path])
            if found is None:
                raise WeightsError(f'{path}: folder holds no {names(model)[0]}')
            return note(found, progress)
        if not path.is_file():
            raise WeightsError(f'{path}: no such weights file')
        return path
    env = os.environ.get('JAXVIS_WEIGHTS')
    if env and not Path(env).expanduser().exists():
        raise WeightsError(f'$JAXVIS_WEIGHTS={env}: no such file or folder')
    found, moved = find_usable(names(model), progress)
    if found is not None:
        return note(found, progress)
    where = ', '.join(str(p) for p in search_paths())
    damaged = f'{"; ".join(moved)}. ' if moved else ''
    if not download:
        raise WeightsError(f'{damaged}no {model} weights found (looked for {names(model)[0]} in {where}); '
                           f'run `jaxvis weights --fetch --model {model}`, put it in weights/ or pass --weights')
    try:
        return fetch(model, progress=progress, searched=None if model in WHEELS else where)
    except WeightsError as e:
        if not moved:
            raise
        raise WeightsError(f'{damaged}Fetching it again failed: {e} Or run `jaxvis weights --fetch --model {model}` '
                           'when online') from None


def describe(path: str | os.PathLike) -> dict:
    """``{'name', 'source', 'path', 'size', 'sha256'}`` of a weights file.

    ``source`` is 'keras' for the official file names, 'hed' for the converted HED file, 'pypi' for a
    ``.pth`` from a PyPI wheel, else 'user' (by name only; ``sha256`` is the file's real identity).
    """
    path = Path(os.path.abspath(Path(path).expanduser()))  # a symlink keeps its own name
    name = path.name
    source = ('keras' if name in {o.name for o in OFFICIAL.values()} else 'hed' if name == HED.name
              else 'pypi' if name in {w.name for w in WHEELS.values()} else 'user')
    return {'name': name, 'source': source, 'path': str(path), 'size': path.stat().st_size,
            'sha256': file_digest(path, 'sha256')}


def describe_params(params, name: str) -> dict:
    """Like :func:`describe`, for params a model carries: the sha256 of every leaf's bytes, in tree order."""
    h, size = hashlib.sha256(), 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(jax.tree_util.keystr(path).encode() + str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
        size += a.nbytes
    return {'name': name, 'source': 'callable', 'path': name, 'size': size, 'sha256': h.hexdigest()}


def cached() -> list[dict]:
    """:func:`describe` of every ``.h5`` and ``.pth`` file in the search locations (no duplicates), in
    search order."""
    seen, out = set(), []
    for place in search_paths():
        files = [place] if place.is_file() else sorted([*place.glob('*.h5'), *place.glob('*.pth')]) if place.is_dir() else []
        for f in files:
            if f.name.startswith('.') or not f.is_file() or f.resolve() in seen:
                continue
            seen.add(f.resolve())
            out.append(describe(f))
    return out
