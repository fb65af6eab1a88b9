#!/usr/bin/env python3
"""Make jaxvis/data/maco_spectrum.npz: MACO's fixed magnitude spectrum, from photos on PyPI.

    python scripts/maco_spectrum.py [--wheel scikit_image-0.26.0-....whl] [--check]

Reads the colour photos that ship inside scikit-image 0.26.0's wheel (``pip download``ed into a temporary
folder unless ``--wheel`` names one; nothing is installed), checks each one's sha256, and takes from each
the centred square and its four half-size quadrants, every crop resized (Pillow, bicubic) to ``--size``
pixels. Each crop, RGB in [0, 1], goes to Lucid's decorrelated colour space
(``jaxvis.param.rgb_to_decorrelated``); the template is the mean of ``|rfft2|`` over the crops
(``jaxvis.spectrum.mean_magnitude``), stored as float32 with the photo names, their sha256 and this recipe.
``--check`` compares with the shipped file instead of writing it (exit 1 if they differ).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import zipfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from jaxvis import param, spectrum  # noqa: E402
from sample_photo import download as download_wheel  # noqa: E402  (the DeepDream photo's pip download)

PHOTOS = {  # skimage/data/<name>, sha256 in the 0.26.0 wheels: the natural colour photographs it ships
    'astronaut.png': '88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5',
    'chelsea.png': '596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb',
    'coffee.png': 'cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7',
    'rocket.jpg': 'c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c',
    'motorcycle_left.png': 'db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179',
    'motorcycle_right.png': '5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797',
}
RECIPE = ('centred square + its 4 quadrants per photo, Pillow bicubic resize to size x size, RGB/255, '
          'jaxvis.param.rgb_to_decorrelated, mean over crops of |numpy.fft.rfft2| over (H, W), float64 -> float32')


def crops(rgb: np.ndarray, size: int) -> list[np.ndarray]:
    """``[H, W, 3]`` uint8 -> five ``[size, size, 3]`` float64 crops in [0, 1] (centre square, quadrants)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    sq = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    half = s // 2
    parts = [sq] + [sq[i:i + half, j:j + half] for i in (0, half) for j in (0, half)]
    return [np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize((size, size), Image.BICUBIC),
                       np.float64) / 255.0 for p in parts]


def read_photos(wheel: str) -> dict[str, np.ndarray]:
    """``{name: (sha256, [H, W, 3] uint8)}`` from the wheel, sha256-checked."""
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name, sha in PHOTOS.items():
            data = z.read(f'skimage/data/{name}')
            digest = hashlib.sha256(data).hexdigest()
            if digest != sha:
                raise RuntimeError(f'{name}: sha256 {digest} is not {sha}')
            out[name] = (digest, np.asarray(Image.open(io.BytesIO(data)).convert('RGB')))
    return out


def make(wheel: str, size: int) -> dict[str, np.ndarray]:
    """The npz's arrays: ``magnitude`` ``[size, size // 2 + 1, 3]`` float32 and its provenance."""
    photos = read_photos(wheel)
    rgb = np.stack([c for _, img in photos.values() for c in crops(img, size)])
    t = np.asarray(param.rgb_to_decorrelated(rgb.astype(np.float32)), np.float64)
    return {'magnitude': spectrum.mean_magnitude(t), 'photos': np.asarray(list(photos)),
            'sha256': np.asarray([d for d, _ in photos.values()]), 'recipe': np.asarray(RECIPE),
            'source': np.asarray(f'scikit-image {os.path.basename(wheel)}'), 'crops': np.asarray(len(rgb))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--wheel', default=None, help='a scikit-image 0.26.0 wheel (default: pip download one)')
    ap.add_argument('--size', type=int, default=128, help='template side (default 128, jaxvis\'s default image size)')
    ap.add_argument('--out', default=spectrum.SPECTRUM_FILE)
    ap.add_argument('--check', action='store_true', help='compare with --out instead of writing it')
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        arrays = make(args.wheel or download_wheel(tmp), args.size)
    if args.check:
        with np.load(args.out) as f:
            same = np.array_equal(f['magnitude'], arrays['magnitude'])
        print(f'maco_spectrum: {args.out} {"matches" if same else "DIFFERS"}')
        return 0 if same else 1
    np.savez_compressed(args.out, **arrays)
    print(f'maco_spectrum: wrote {args.out} ({arrays["crops"]} crops of {len(PHOTOS)} photos, '
          f'{arrays["magnitude"].shape})')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
