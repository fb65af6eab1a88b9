"""seed, lucid and maco side by side on one layer: a panel, quality metrics and the dead filters.

    python scripts/deep_presets.py --layer block5_conv1 --filters 0 8 11 --size 128 \
        --steps seed=20 lucid=64 maco=64 --out docs/deep_block5.png --json deep_block5.json [--weights PATH]

Each preset runs with its own pieces (and the given step count) on the same filters and key; the table
has the engine's objective, the re-scored activation, selectivity and high-frequency share
(``jaxvis.metrics.measure``), the dead filters (final objective <= 0) and the seconds of each call. The
maco row is shown with its transparency (``jaxvis.display.maco_rgba`` over white) and as is.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jaxvis  # noqa: E402
from compare_presets import panel  # noqa: E402
from jaxvis import metrics  # noqa: E402
from jaxvis.display import maco_rgba, to_uint8  # noqa: E402
from jaxvis.edge.weights import resolve  # noqa: E402
from jaxvis.visualize import preset, visualize_filters  # noqa: E402


def over_white(rgba: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` uint8 -> ``[H, W, 3]`` uint8 composited over white."""
    a = rgba[..., 3:].astype(np.float64) / 255.0
    return np.rint(rgba[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--layer', default='block5_conv1')
    ap.add_argument('--filters', type=int, nargs='+', default=list(range(8)))
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--steps', nargs='+', default=['seed=20', 'lucid=64', 'maco=64'], help='preset=steps ...')
    ap.add_argument('--maco-crops', type=int, default=None, help="crops per step for maco (default: the preset's 4)")
    ap.add_argument('--weights', default=None)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default=None, help='the panel (PNG)')
    ap.add_argument('--json', default=None)
    args = ap.parse_args(argv)

    path = resolve('vgg16', args.weights)
    params = jaxvis.load_keras_h5(path)
    key = jax.random.key(args.seed)
    tiles, labels, rows = [], [], []
    print('| preset | steps | objective | activation | selectivity | HF share | dead | dead filters | wall (s) |\n'
          '|---|---|---|---|---|---|---|---|---|', flush=True)
    for item in args.steps:
        name, steps = item.split('=')
        t = time.perf_counter()
        extra = {'crops': args.maco_crops} if name == 'maco' and args.maco_crops else {}
        r = visualize_filters(params, args.layer, args.filters, preset(name, steps=int(steps), **extra),
                              size=args.size, key=key, drop_dead=name == 'seed')
        dt = time.perf_counter() - t
        m = metrics.measure(params, r, args.layer)
        dead = [int(f) for f in r.filters[r.dead]]
        row = {'preset': name, 'steps': int(steps), 'options': extra, 'objective': float(np.mean(r.losses)),
               'activation': float(np.mean(m['activation'])), 'selectivity': float(np.median(m['selectivity'])),
               'hf_share': float(np.mean(m['hf_share'])), 'dead': len(dead), 'dead_filters': dead,
               'seconds': round(dt, 1), 'losses': [float(v) for v in r.losses],
               'rescued': [] if r.rescued is None else [int(f) for f in r.filters[r.rescued]]}
        rows.append(row)
        print(f"| {name} | {steps} | {row['objective']:.1f} | {row['activation']:.1f} | {row['selectivity']:.2f} "
              f"| {row['hf_share']:.3f} | {len(dead)} of {len(r.filters)} | {dead} | {dt:.0f} |", flush=True)
        tiles.append(to_uint8(r.images, 'clip' if r.config.param.space != 'input' else 'seed'))
        labels.append(f'{name}\n{steps} steps' + (f', {extra["crops"]} crops' if extra else ''))
        if r.alpha is not None:
            tiles.append(np.stack([over_white(maco_rgba(im, a)) for im, a in zip(r.images, r.alpha)]))
            labels.append(f'{name} with its\ntransparency')
    footer = (f'{args.layer}, filters {args.filters}, {args.size} px, key {args.seed}; weights {path}; '
              f'{platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s), {os.cpu_count()} cores, '
              f'load average at the end {os.getloadavg()[0]:.1f}')
    print(footer)
    if args.out:
        panel(tiles, labels, list(args.filters)).save(args.out)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'layer': args.layer, 'filters': args.filters, 'size': args.size, 'weights': str(path),
                       'footer': footer, 'rows': rows}, f, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
