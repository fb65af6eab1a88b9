"""One picture of a ``jaxvis filters`` folder: a row per layer (in the manifest's order), its per-filter
images left to right, the layer's name and filter indices under each row.

    python scripts/filters_sheet.py jaxvis_filters docs/keras_vis_seed004.jpg [--tile 96] [--quality 85]

Reads ``manifest.json``'s file names (PNG or JPG); writes JPEG (or PNG for a ``.png`` name) atomically.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
from PIL import Image, ImageDraw

from jaxvis.edge.files import save_jpg, save_png

LABEL = 14   # pixels of text under each row


def sheet(folder: str, tile: int, margin: int = 4) -> np.ndarray:
    """``[rows * (tile + LABEL + margin), cols * (tile + margin), 3]`` uint8 from ``folder``'s manifest."""
    with open(os.path.join(folder, 'manifest.json')) as f:
        layers = json.load(f)['layers']
    cols = max(len(v['filters']) for v in layers.values())
    h = tile + LABEL + margin
    canvas = Image.new('RGB', (cols * (tile + margin) - margin, len(layers) * h - margin), 'white')
    draw = ImageDraw.Draw(canvas)
    for r, (layer, entry) in enumerate(layers.items()):
        for c, e in enumerate(entry['filters']):
            with Image.open(os.path.join(folder, e['file'])) as im:
                canvas.paste(im.convert('RGB').resize((tile, tile), Image.LANCZOS), (c * (tile + margin), r * h))
            draw.text((c * (tile + margin) + 2, r * h + tile + 1), f'{layer} {e["filter"]}', fill='black')
    return np.asarray(canvas)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('folder')
    ap.add_argument('out')
    ap.add_argument('--tile', type=int, default=96)
    ap.add_argument('--quality', type=int, default=85)
    args = ap.parse_args(argv)
    pic = sheet(args.folder, args.tile)
    if args.out.endswith('.png'):
        save_png(args.out, pic)
    else:
        save_jpg(args.out, pic, quality=args.quality)
    print(f'{args.out}: {pic.shape[1]}x{pic.shape[0]}, {os.path.getsize(args.out) / 1024:.0f} KB')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
