"""Put the PNGs that `jaxvis filters` saved side by side in one row, as a small JPEG for the docs.

    python scripts/row.py OUT/logits_967.png OUT/logits_285.png ... --out docs/classes_lucid.jpg [--quality 85]

Tiles in the order given, 4 px black margins (:func:`jaxvis.display.grid`), resized to ``--tile`` px if given.
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from jaxvis.display import grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('pngs', nargs='+')
    ap.add_argument('--out', required=True)
    ap.add_argument('--quality', type=int, default=85)
    ap.add_argument('--tile', type=int, default=None, help='tile side in px (default: as saved)')
    a = ap.parse_args()
    tiles = []
    for path in a.pngs:
        im = Image.open(path).convert('RGB')
        if a.tile:
            im = im.resize((a.tile, a.tile), Image.Resampling.LANCZOS)
        tiles.append(np.asarray(im))
    Image.fromarray(grid(tiles, margin=4, cols=len(tiles))).save(a.out, quality=a.quality)


if __name__ == '__main__':
    main()
