#!/usr/bin/env python
"""What the convolution algorithm does to the images: the same filters, key and steps with two ``conv``
settings (default 'direct' vs 'auto'), compared filter by filter.

Prints a markdown table: final objective under each setting, mean / max absolute pixel difference (RGB
0..255, unclipped), and a summary over all filters; ``--json`` writes the numbers too.

  python scripts/compare_conv.py --weights ~/.cache/jaxvis/vgg16_hed_bsds500_notop.h5 --filters 0:16
"""
from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

from jaxvis.models import get_model, load_keras_h5
from jaxvis.visualize import preset, visualize_filters


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    ap.add_argument('--weights', required=True, help='a Keras .h5 (real weights: random ones say little)')
    ap.add_argument('--layer', default='block5_conv1')
    ap.add_argument('--filters', default='0:16', help="'a:b' (default 0:16)")
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--a', default='direct', help="first conv setting (default 'direct')")
    ap.add_argument('--b', default='auto', help="second conv setting (default 'auto')")
    ap.add_argument('--json', default=None, help='also write the numbers to this file')
    args = ap.parse_args(argv)
    lo, hi = (int(v) for v in args.filters.split(':'))
    params = load_keras_h5(args.weights)
    kw = dict(size=args.size, key=jax.random.key(0), batch_size=args.batch_size)
    cfg = preset('seed', steps=args.steps)
    ra = visualize_filters(params, args.layer, range(lo, hi), cfg, model=get_model('vgg16', conv=args.a), **kw)
    rb = visualize_filters(params, args.layer, range(lo, hi), cfg, model=get_model('vgg16', conv=args.b), **kw)
    diff = np.abs(ra.images - rb.images)
    rows = [{'filter': int(f), f'objective_{args.a}': float(a), f'objective_{args.b}': float(b),
             'mean_abs_pixel_diff': float(d.mean()), 'max_abs_pixel_diff': float(d.max())}
            for f, a, b, d in zip(ra.filters, ra.losses, rb.losses, diff)]
    print(f'| filter | objective {args.a} | objective {args.b} | mean abs pixel diff | max |\n|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['filter']} | {r[f'objective_{args.a}']:.3f} | {r[f'objective_{args.b}']:.3f} | "
              f"{r['mean_abs_pixel_diff']:.3f} | {r['max_abs_pixel_diff']:.2f} |")
    live = ~(ra.dead | rb.dead)
    rel = (rb.losses[live] - ra.losses[live]) / ra.losses[live]
    summary = {'layer': args.layer, 'filters': [lo, hi], 'steps': args.steps, 'dead_a': int(ra.dead.sum()),
               'dead_b': int(rb.dead.sum()), 'same_dead': bool((ra.dead == rb.dead).all()),
               'mean_abs_pixel_diff': float(diff.mean()), 'p99_abs_pixel_diff': float(np.percentile(diff, 99)),
               'max_abs_pixel_diff': float(diff.max()),
               'objective_rel_diff_range': [float(rel.min()), float(rel.max())] if live.any() else None}
    print(json.dumps(summary))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'summary': summary, 'filters': rows}, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
