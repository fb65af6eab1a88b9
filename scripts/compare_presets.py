"""Every preset side by side on one layer: a labelled panel (rows presets, columns filters) and a
markdown table of quality metrics (jaxvis.metrics).

    python scripts/compare_presets.py --layer block4_conv1 --filters 0 1 2 3 --size 128 \
        --out docs/presets.png --table docs/presets_table.md [--weights PATH]

The seed-003 rows reproduce seed 000's comparison (no regularization, L2 decay, blur, small-value clip,
all combined) as overrides of the ``seed`` preset; then seed 000's own weighted combination (``jacobgil``),
Yosinski et al.'s four rows and ``lucid``. The long presets run fewer steps than they define
(``--yosinski-steps``, ``--lucid-steps``); the table says how many each row ran.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont

import jaxvis
from jaxvis import metrics
from jaxvis.display import to_uint8
from jaxvis.edge.weights import resolve
from jaxvis.visualize import preset, visualize_diverse, visualize_filters


def rows(yosinski_steps: int, lucid_steps: int) -> list[tuple[str, str, dict]]:
    """``(label, preset, overrides)`` of each panel row, top to bottom."""
    return [
        ('seed: no regularization', 'seed', {}),
        ('seed + L2 decay 0.2', 'seed', dict(decay=0.2)),
        ('seed + 3x3 box blur', 'seed', dict(blur_box=3)),
        ('seed + clip |x| < 1st pct', 'seed', dict(value_pct=1.0)),
        ('seed + all three', 'seed', dict(decay=0.2, blur_box=3, value_pct=1.0)),
        ('jacobgil (seed 000 mix)', 'jacobgil', {}),
        *[(f'yosinski{i}', f'yosinski{i}', dict(steps=min(yosinski_steps, preset(f'yosinski{i}').steps)))
          for i in range(1, 5)],
        ('lucid', 'lucid', dict(steps=lucid_steps)),
    ]


def panel(tiles: list[np.ndarray], labels: list[str], filters: list[int], *, label_w: int = 190,
          head_h: int = 18, margin: int = 4) -> Image.Image:
    """``tiles[r]`` ``[F, H, W, 3]`` uint8 -> one labelled picture (rows: ``labels``, columns: filters)."""
    n_f, h, w = tiles[0].shape[:3]
    font = ImageFont.load_default()
    out = Image.new('RGB', (label_w + n_f * (w + margin), head_h + len(tiles) * (h + margin)), 'white')
    draw = ImageDraw.Draw(out)
    for j, f in enumerate(filters):
        draw.text((label_w + j * (w + margin) + 2, 2), f'filter {f}', fill='black', font=font)
    for i, (row, label) in enumerate(zip(tiles, labels)):
        y = head_h + i * (h + margin)
        for k, line in enumerate(label.split('\n')):
            draw.text((4, y + h // 2 - 14 + 14 * k), line, fill='black', font=font)
        for j in range(n_f):
            out.paste(Image.fromarray(row[j]), (label_w + j * (w + margin), y))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--layer', default='block4_conv1')
    ap.add_argument('--filters', type=int, nargs='+', default=[0, 1, 2, 3])
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--yosinski-steps', type=int, default=25)
    ap.add_argument('--lucid-steps', type=int, default=64)
    ap.add_argument('--weights', default=None, help='a Keras VGG16 .h5 (default: jaxvis.edge.weights.resolve)')
    ap.add_argument('--out', default='docs/presets.png')
    ap.add_argument('--table', default=None, help='also write the markdown table here')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--diverse', type=int, default=None, metavar='FILTER',
                    help='also render 4 images of this filter with the lucid preset, without and with the '
                         'diversity term, into <out>_diversity.png')
    ap.add_argument('--diversity-weight', type=float, default=15.0)
    args = ap.parse_args(argv)

    path = resolve('vgg16', args.weights)
    params = jaxvis.load_keras_h5(path)
    key = jax.random.key(args.seed)
    tiles, labels, lines = [], [], []
    head = ('| row | preset (overrides) | steps | objective (engine) | activation | selectivity | HF share '
            '| dead | wall (s) | CPU (s) |\n|---|---|---|---|---|---|---|---|---|---|')
    print(head, flush=True)
    total, cpu = time.perf_counter(), time.process_time()
    for label, name, over in rows(args.yosinski_steps, args.lucid_steps):
        t, c = time.perf_counter(), time.process_time()
        r = visualize_filters(params, args.layer, args.filters, preset(name, **over), size=args.size, key=key)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        m = metrics.measure(params, r, args.layer)
        # as `jaxvis filters` saves them: seed 003's mean/std display for pixel presets; a param's image as is
        tiles.append(to_uint8(r.images, 'clip' if r.config.param.space != 'input' else 'seed'))
        labels.append(f'{label}\n{r.config.steps} steps')
        opts = ', '.join(f'{k}={v}' for k, v in over.items() if k != 'steps')
        line = (f'| {label} | {name}{f" ({opts})" if opts else ""} | {r.config.steps} | {np.mean(r.losses):.1f} '
                f'| {np.mean(m["activation"]):.1f} | {np.median(m["selectivity"]):.2f} '
                f'| {np.mean(m["hf_share"]):.3f} | {m["dead_fraction"]:.2f} | {dt:.0f} | {dc:.0f} |')
        lines.append(line)
        print(line, flush=True)
    total, cpu = time.perf_counter() - total, time.process_time() - cpu
    panel(tiles, labels, list(args.filters)).save(args.out)
    footer = (f'\n{args.layer}, filters {args.filters}, {args.size}x{args.size}, key {args.seed}; weights {path}; '
              f'{platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} '
              f'device(s), {os.cpu_count()} cores; total {total:.0f} s wall, {cpu:.0f} s CPU; '
              f'load average at the end {os.getloadavg()[0]:.1f}')
    print(footer)
    if args.diverse is not None:
        footer += '\n' + diverse(params, args, key)
    if args.table:
        with open(args.table, 'w') as f:
            f.write(head + '\n' + '\n'.join(lines) + '\n' + footer + '\n')
    return 0


def diverse(params, args, key) -> str:
    """Four lucid images of one filter, optimized jointly, with diversity weight 0 and ``--diversity-weight``."""
    tiles, labels, out = [], [], ['\n| diversity weight | activation (mean) | Gram diversity | image diversity | wall (s) |',
                                  '|---|---|---|---|---|']
    for w in (0.0, args.diversity_weight):
        t = time.perf_counter()
        r = visualize_diverse(params, args.layer, args.diverse, preset('lucid', steps=args.lucid_steps), n=4,
                              weight=w, size=args.size, key=key)
        dt = time.perf_counter() - t
        tiles.append(to_uint8(r.images, 'clip'))
        labels.append(f'lucid, filter {args.diverse}\ndiversity weight {w:g}')
        out.append(f'| {w:g} | {np.mean(r.activation):.1f} | {r.diversity:.3f} '
                   f'| {float(metrics.image_diversity(r.images)):.3f} | {dt:.0f} |')
        print(out[-1], flush=True)
    stem, ext = os.path.splitext(args.out)
    panel(tiles, labels, [args.diverse] * 4).save(f'{stem}_diversity{ext}')
    return '\n'.join(out)


if __name__ == '__main__':
    raise SystemExit(main())
