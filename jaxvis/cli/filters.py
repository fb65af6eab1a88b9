"""``jaxvis filters``: visualize many filters of a layer (or of every conv layer) as PNGs, a grid and a GIF."""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from jaxvis.cli.common import add_model_args, ensure_out_dir, load_params, use_compile_cache
from jaxvis.cli.output import environment, save_gif, save_png, write_json
from jaxvis.config import PRESETS, preset
from jaxvis.display import NORMALIZERS, grid, to_uint8
from jaxvis.errors import JaxvisError
from jaxvis.filters import best_order, parse_filters, visualize_filters
from jaxvis.schedule import can_drop_dead
from jaxvis.tuning import CONV_MODES

OVERRIDES = (  # (flag, FilterConfig field, type)
    ('--step-size', 'step_size', float), ('--decay', 'decay', float), ('--blur-sigma', 'blur_sigma', float),
    ('--blur-every', 'blur_every', int), ('--norm-pct', 'norm_pct', float),
    ('--contrib-pct', 'contrib_pct', float), ('--jitter', 'jitter', int),
)


def add_parser(sub) -> None:
    p = sub.add_parser('filters', help='activation maximization: what each filter responds to',
                       description='Optimize an input image for each filter of a layer (gradient ascent on the '
                                   "filter's mean activation) and save PNGs, a grid of the best, a manifest and "
                                   'optionally a GIF of the filters forming.')
    p.add_argument('--layer', required=True, help="layer name, e.g. block5_conv1, or 'all' (every conv layer)")
    p.add_argument('--filters', default='0:64', help="indices: '0:64', '0:512:8', '3,7,9', 'all' (default 0:64)")
    add_model_args(p)
    p.add_argument('--preset', default='seed', choices=sorted(PRESETS), help='optimization recipe (default: seed)')
    p.add_argument('--steps', type=int, default=None, help="gradient steps (default: the preset's)")
    p.add_argument('--size', type=int, default=128, help='image side in pixels (default 128)')
    p.add_argument('--seed', type=int, default=0, help='random seed (default 0); same seed, same bytes')
    p.add_argument('--batch-size', type=int, default=None, help='filters optimized together (memory bound)')
    p.add_argument('--drop-dead', default=None, action=argparse.BooleanOptionalAction,
                   help='after the first step, optimize only the live filters (seed 003 skips the dead ones; '
                        'their images are exactly the same). Default: on where the preset allows it (seed)')
    p.add_argument('--conv', default=None, choices=CONV_MODES,
                   help="convolution algorithms (default 'auto': Winograd for the layers where it was measured "
                        "faster on CPU, XLA's own on GPU/TPU; 'direct': XLA's own everywhere)")
    for flag, field, typ in OVERRIDES:
        p.add_argument(flag, dest=field, type=typ, default=None, help=f'override the preset\'s {field}')
    p.add_argument('--out', default='jaxvis_filters', help='output folder (default ./jaxvis_filters)')
    p.add_argument('--best', type=int, default=None, help='grid of the best N live filters (default: all live)')
    p.add_argument('--margin', type=int, default=5, help='pixels between grid tiles (default 5)')
    p.add_argument('--normalize', default=None, choices=sorted(NORMALIZERS),
                   help="display normalization (default 'seed', seed 003's mean/std one; 'clip' for --preset lucid, "
                        "whose images are already in range)")
    p.add_argument('--gif', action='store_true', help='also write <layer>.gif of the grid as the filters form')
    p.add_argument('--snapshot-every', type=int, default=None, help='steps between GIF frames (default steps/20)')
    p.add_argument('--quiet', action='store_true', help='no progress bar or messages')
    p.set_defaults(run=run)


def parse_filter_arg(text: str, n_channels: int, layer: str) -> np.ndarray:
    """'a:b[:s]', 'a,b,c', 'N' or 'all' -> indices checked against the layer's ``n_channels``."""
    text = text.strip()
    try:
        if text == 'all':
            sel = 'all'
        elif ':' in text:
            parts = [int(s) if s else None for s in text.split(':')]
            start, stop = parts[0] or 0, parts[1] if len(parts) > 1 else None
            if stop is not None and stop > n_channels:
                raise JaxvisError(f'filter {stop - 1} is out of range: {layer} has {n_channels} filters '
                                  f'(0..{n_channels - 1})')
            sel = slice(start, stop, parts[2] if len(parts) > 2 else None)
        else:
            sel = [int(s) for s in text.split(',') if s.strip()]
    except ValueError:
        raise JaxvisError(f"bad --filters {text!r}: use e.g. '0:64', '3,7,9' or 'all'") from None
    return parse_filters(sel, n_channels, layer)


def run(args: argparse.Namespace) -> int:
    from jaxvis.models import get_model

    spec = get_model(args.model)
    layers = list(spec.conv_layers) if args.layer == 'all' else [args.layer]
    overrides = {field: getattr(args, field) for _, field, _ in OVERRIDES if getattr(args, field) is not None}
    if args.steps is not None:
        overrides['steps'] = args.steps
    if args.conv is not None:
        overrides['conv'] = args.conv
    cfg = preset(args.preset, **overrides)
    if args.normalize is None:
        args.normalize = 'clip' if cfg.param is not None else 'seed'
    drop_dead = can_drop_dead(cfg) if args.drop_dead is None else args.drop_dead
    if drop_dead and not can_drop_dead(cfg):
        raise JaxvisError(f'--drop-dead needs a preset whose step cannot move a zero-gradient image '
                          f'(no jitter, blur, decay, optimizer, ...): not {args.preset} with these options')
    if args.best is not None and args.best < 1:
        raise JaxvisError('--best must be >= 1')
    if args.size < 1:
        raise JaxvisError('--size must be >= 1')
    if args.batch_size is not None and args.batch_size < 1:
        raise JaxvisError('--batch-size must be >= 1')
    plan = []
    for layer in layers:  # check everything before computing anything
        spec.layer(layer)
        spec.check_size(layer, args.size)
        plan.append((layer, parse_filter_arg(args.filters, spec.channels(layer), layer)))
    out = ensure_out_dir(args.out)
    snapshot_every = args.snapshot_every or (max(1, cfg.steps // 20) if args.gif else None)

    spec, params, weights_info = load_params(args, quiet=args.quiet)
    use_compile_cache()
    key = jax.random.key(args.seed)
    manifest = {
        'command': 'filters', 'argv': sys.argv[1:], 'model': spec.name, 'size': args.size, 'seed': args.seed,
        'preset': args.preset, 'config': cfg.to_dict(), 'batch_size': args.batch_size,
        'normalize': args.normalize, 'drop_dead': drop_dead, 'weights': weights_info,
        'environment': environment(), 'layers': {},
    }
    for layer, idx in plan:
        bar = _progress_bar(len(idx) * cfg.steps, layer, args.quiet)
        t0 = time.time()
        try:
            res = visualize_filters(params, layer, idx, model=spec, size=args.size, key=key, config=cfg,
                                    batch_size=args.batch_size, snapshot_every=snapshot_every,
                                    drop_dead=drop_dead, progress=bar.update if bar else None)
        finally:
            if bar:
                bar.close()
        seconds = time.time() - t0
        files = _write_layer(out, layer, res, args)
        manifest['layers'][layer] = {
            'seconds': round(seconds, 3), 'files': files,
            'filters': [{'filter': int(f), 'loss': float(l), 'dead': bool(d), 'file': f'{layer}_{int(f)}.png'}
                        for f, l, d in zip(res.filters, res.losses, res.dead)],
            'grid_order': [int(res.filters[i]) for i in best_order(res, args.best)],
            'dead_count': int(res.dead.sum()),
        }
        write_json(os.path.join(out, 'manifest.json'), manifest)
        if not args.quiet:
            sys.stderr.write(f'jaxvis: {layer}: {len(idx)} filters, {int(res.dead.sum())} dead, '
                             f'{seconds:.1f} s -> {out}\n')
    return 0


def _progress_bar(total: int, layer: str, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=layer, unit='filter-step', file=sys.stderr, dynamic_ncols=True)


def _write_layer(out: str, layer: str, res, args) -> list[str]:
    """Per-filter PNGs, the grid of the best live filters and optionally the GIF; returns the file names."""
    pics = to_uint8(res.images, args.normalize)
    files = []
    for f, pic in zip(res.filters, pics):
        save_png(os.path.join(out, f'{layer}_{int(f)}.png'), pic)
    order = best_order(res, args.best)
    if len(order):
        save_png(os.path.join(out, f'{layer}_grid.png'), grid([pics[i] for i in order], margin=args.margin))
        files.append(f'{layer}_grid.png')
    if args.gif and res.snapshots is not None and len(order):
        frames = [grid(list(to_uint8(snap[order], args.normalize)), margin=args.margin) for snap in res.snapshots]
        save_gif(os.path.join(out, f'{layer}.gif'), frames, duration_ms=150)
        files.append(f'{layer}.gif')
    return files
