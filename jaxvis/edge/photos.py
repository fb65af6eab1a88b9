"""Photos for dataset examples: a folder of the user's, or the sample photos inside scikit-image's wheel
on PyPI (fetched once into the jaxvis cache, sha256-checked), cut into square tiles of one size.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from jaxvis.edge import fetch
from jaxvis.edge.files import atomic_path
from jaxvis.edge.images import read_image
from jaxvis.edge.locations import cache_dir
from jaxvis.errors import JaxvisError

SKIMAGE_VERSION = '0.26.0'
SHA256 = {  # of skimage/data/<name>.png, identical in every 0.26.0 wheel
    'chelsea': '596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb',
    'coffee': 'cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7',
    'astronaut': '88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5',
}
EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp')


def extract(wheel: str, name: str) -> bytes:
    """The bytes of ``skimage/data/<name>.png`` in ``wheel``, sha256-checked (RuntimeError otherwise)."""
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(f'skimage/data/{name}.png')
    except zipfile.BadZipFile:
        raise RuntimeError(f'{wheel} is not a wheel (zip) file') from None
    except KeyError:
        raise RuntimeError(f'{wheel} has no skimage/data/{name}.png') from None
    got = hashlib.sha256(data).hexdigest()
    if got != SHA256[name]:
        raise RuntimeError(f'{name}.png in {os.path.basename(wheel)} has sha256 {got}, expected {SHA256[name]}')
    return data


def default_photos() -> list[Path]:
    """scikit-image's sample photos (chelsea, coffee, astronaut) in ``<jaxvis cache>/photos``, fetched
    with pip the first time. Raises JaxvisError if they cannot be fetched."""
    folder = cache_dir() / 'photos'
    paths = [folder / f'{name}.png' for name in SHA256]
    if all(p.exists() for p in paths):
        return paths
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix='jaxvis-photos-') as tmp:
            fetch._pip_download(f'scikit-image=={SKIMAGE_VERSION}', tmp)
            wheel = next(str(p) for p in Path(tmp).glob('scikit_image-*.whl'))
            for name, path in zip(SHA256, paths):
                with atomic_path(path) as part:
                    Path(part).write_bytes(extract(wheel, name))
    except Exception as e:  # noqa: BLE001 - any failure of the fetch is one message
        raise JaxvisError(f'no photos for dataset examples: fetching scikit-image {SKIMAGE_VERSION}\'s sample '
                          f'photos failed ({type(e).__name__}: {str(e)[:120]}); pass --photos DIR') from None
    return paths


def photo_files(folder: str) -> list[Path]:
    """The image files directly in ``folder``, sorted by name. Raises JaxvisError if there are none."""
    if not os.path.isdir(folder):
        raise JaxvisError(f'--photos {folder} is not a folder')
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise JaxvisError(f'--photos {folder} holds no images ({", ".join(EXTENSIONS)})')
    return files


def tiles(paths, size: int = 224) -> tuple[np.ndarray, list[str]]:
    """Each photo scaled so its shorter side is ``size`` and cut into ``ceil(longer / size)`` evenly
    spaced ``size`` x ``size`` tiles. Returns ``([P, size, size, 3] float32 RGB 0..255, labels)``, a
    label being ``'<file name> #<tile>'``. Raises JaxvisError for an unreadable file."""
    out, labels = [], []
    for path in paths:
        rgb, _ = read_image(str(path))
        h, w = rgb.shape[:2]
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        im = np.asarray(Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)).resize((nw, nh),
                                                                                            Image.LANCZOS))
        n = -(-max(nh, nw) // size)
        for i, start in enumerate(np.linspace(0, max(nh, nw) - size, n).round().astype(int)):
            tile = im[start:start + size] if nh > nw else im[:, start:start + size]
            out.append(tile[:size, :size].astype(np.float32))
            labels.append(f'{Path(path).name} #{i}')
    return np.stack(out), labels
