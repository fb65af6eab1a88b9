"""Count dead filters (final objective <= 0) with and without the redirected-ReLU gradient.

    python scripts/dead_filters.py --layer block5_conv1 --filters 64 --size 128 [--weights PATH]

Runs the ``seed`` preset and the ``seed`` preset with ``redirect_relu_steps`` (Lucid's recovery) on the
first N filters; with ``--lucid-steps K`` also the ``lucid`` preset, with and without the recovery, on the
filters both leave dead. Prints a markdown table and writes it as JSON to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import jaxvis
from jaxvis.edge.weights import resolve
from jaxvis.visualize import preset, visualize_filters


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--layer', default='block5_conv1')
    ap.add_argument('--filters', type=int, default=64, help='the first N filters')
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--redirect', type=int, default=16, help='redirected-ReLU steps')
    ap.add_argument('--lucid-steps', type=int, default=0, help='> 0: lucid runs on the still-dead filters')
    ap.add_argument('--only', default=None, help="'0,8,11': skip the seed runs, lucid runs on these filters")
    ap.add_argument('--weights', default=None)
    ap.add_argument('--out', default='dead_filters.json')
    args = ap.parse_args(argv)

    path = resolve('vgg16', args.weights)
    params = jaxvis.load_keras_h5(path)
    rows = []

    def run(name, filters, preset_name, **kw):
        t = time.perf_counter()
        r = visualize_filters(params, args.layer, filters, preset(preset_name, **kw), size=args.size)
        dt = time.perf_counter() - t
        dead = [int(f) for f in r.filters[r.dead]]
        rows.append({'run': name, 'filters': len(r.filters), 'dead': len(dead), 'dead_filters': dead,
                     'median_objective': float(np.median(r.losses)), 'seconds': round(dt, 1)})
        print(f'| {name} | {len(r.filters)} | {len(dead)} | {dead} | {np.median(r.losses):.2f} | {dt:.0f} |',
              flush=True)
        return dead

    print(f'weights: {path}\n\n| run | filters | dead | dead filters | median objective | s |\n|---|---|---|---|---|---|')
    first = range(args.filters)
    if args.only:
        dead = {int(f) for f in args.only.split(',')}
    else:
        dead = set(run('seed (20 steps)', first, 'seed'))
        dead &= set(run(f'seed + redirected ReLU ({args.redirect} of 20 steps)', first, 'seed',
                        redirect_relu_steps=args.redirect))
    if dead and args.lucid_steps:
        still = sorted(dead)
        run(f'lucid, no redirect ({args.lucid_steps} steps), still-dead only', still, 'lucid',
            steps=args.lucid_steps, redirect_relu_steps=0)
        run(f'lucid ({args.lucid_steps} steps, redirect {args.redirect}), still-dead only', still, 'lucid',
            steps=args.lucid_steps, redirect_relu_steps=args.redirect)
    with open(args.out, 'w') as f:
        json.dump({'layer': args.layer, 'size': args.size, 'weights': str(path), 'rows': rows}, f, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
