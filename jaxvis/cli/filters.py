"""``jaxvis filters``: visualize many filters of layers (a list, or every conv layer) as PNGs or JPGs, a grid
and a GIF."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax

from jaxvis.atlas.plan import fingerprint
from jaxvis.backend import hosts
from jaxvis.cli.common import (add_model_args, add_rescue_arg, add_width_arg, load_params, model_of,
                               use_compile_cache, width_field, with_rescue_arg)
from jaxvis.display import NORMALIZERS, check_margin
from jaxvis.edge import cluster, filters_out, multi, store
from jaxvis.edge.files import JPEG_QUALITY, check_out_dir, environment, file_stem, write_json
from jaxvis.errors import JaxvisError
from jaxvis.util import check_seed
from jaxvis.models import imagenet, probe
from jaxvis.objectives import class_probability
from jaxvis.visualize import (PRESETS, best_order, can_drop_dead, check_request, draw_filters, preset,
                              visualize_filters)
from jaxvis.visualize.engine import check_width

OVERRIDES = (  # (flag, preset option, type)
    ('--step-size', 'step_size', float), ('--decay', 'decay', float), ('--blur-sigma', 'blur_sigma', float),
    ('--blur-every', 'blur_every', int), ('--norm-pct', 'norm_pct', float),
    ('--contrib-pct', 'contrib_pct', float), ('--jitter', 'jitter', int),
)


def add_parser(sub) -> None:
    p = sub.add_parser('filters', help='activation maximization: what each filter responds to',
                       description='Optimize an input image for each filter of a layer (gradient ascent on the '
                                   "filter's mean activation) and save PNGs, a grid of the best, a manifest and "
                                   'optionally a GIF of the filters forming.')
    p.add_argument('--layer', default=None,
                   help="layer name, e.g. block5_conv1, a list 'block1_conv1,block3_conv2', or 'all' (every conv layer)")
    p.add_argument('--filters', default=None,
                   help="indices: '0:64', '0:512:8', '3,7,9', 'all', or 'random:K' (K distinct filters per layer, "
                        'drawn from --seed and the layer name) (default 0:64)')
    p.add_argument('--class', dest='classes', default=None, metavar='NAMES',
                   help="ImageNet classes by name or index, comma-separated ('espresso,Egyptian cat'): "
                        'stands for --layer logits --filters <their indices>')
    p.add_argument('--probability', action='store_true',
                   help="maximize the class probability (the softmax of --layer's units) instead of the unit "
                        'itself (the logit)')
    add_model_args(p, conv=True)
    p.add_argument('--preset', default='seed', choices=sorted(PRESETS), help='optimization recipe (default: seed)')
    p.add_argument('--steps', type=int, default=None, help="gradient steps (default: the preset's)")
    p.add_argument('--size', type=int, default=128, help='image side in pixels (default 128)')
    p.add_argument('--seed', type=int, default=0, help='random seed (default 0); same seed, same bytes')
    p.add_argument('--batch-size', type=int, default=None, help='filters optimized together (memory bound)')
    add_rescue_arg(p)
    add_width_arg(p)
    p.add_argument('--drop-dead', default=None, action=argparse.BooleanOptionalAction,
                   help='after the first step, optimize only the live filters (seed 003 skips the dead ones; '
                        'their images are exactly the same). Default: on where the preset allows it (seed)')
    for flag, field, typ in OVERRIDES:
        p.add_argument(flag, dest=field, type=typ, default=None, help=f'override the preset\'s {field}')
    p.add_argument('--format', default='png', choices=('png', 'jpg'),
                   help=f'per-filter image files (default png; jpg at quality {JPEG_QUALITY}); the grid stays PNG')
    p.add_argument('--out', default='jaxvis_filters', help='output folder (default ./jaxvis_filters)')
    p.add_argument('--best', type=int, default=None, help='grid of the best N live filters (default: all live)')
    p.add_argument('--margin', type=int, default=5, help='pixels between grid tiles (default 5)')
    p.add_argument('--normalize', default=None, choices=sorted(NORMALIZERS),
                   help="display normalization (default 'seed', seed 003's mean/std one; 'centred' for --preset "
                        "keras-vis; 'clip' for --preset lucid/maco, whose images are already in range)")
    p.add_argument('--gif', action='store_true', help='also write <layer>.gif of the grid as the filters form')
    p.add_argument('--snapshot-every', type=int, default=None, help='steps between GIF frames (default steps/20)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace results of another configuration in --out (the same one continues)')
    p.add_argument('--quiet', action='store_true', help='no progress bar or messages')
    cluster.add_args(p)
    p.set_defaults(run=run)


def parse_filter_arg(text: str):
    """'a:b[:s]', 'a,b,c', 'N', 'all' or 'random:K' -> a selection for :func:`jaxvis.visualize.parse_filters`
    (``('random', K)`` for the last: see :func:`filters_of_layer`)."""
    text = text.strip()
    try:
        if text == 'all':
            return 'all'
        if text.startswith('random:'):
            return 'random', int(text[len('random:'):])
        if ':' in text:
            parts = [int(s) if s else None for s in text.split(':')]
            return slice(parts[0] or 0, parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None)
        return [int(s) for s in text.split(',') if s.strip()]
    except ValueError:
        raise JaxvisError(f"bad --filters {text!r}: use e.g. '0:64', '3,7,9', 'all' or 'random:6'") from None


def layers_of(model, text: str) -> list[str]:
    """``--layer``: one name, a comma-separated list of names (each once), or 'all' (every conv layer)."""
    if text == 'all':
        return list(probe.conv_layers(model))
    layers = [s.strip() for s in text.split(',')]
    if '' in layers or len(set(layers)) < len(layers):
        raise JaxvisError(f'bad --layer {text!r}: give each layer once, separated by commas')
    return [probe.check_layer(model, layer) for layer in layers]


def filters_of_layer(model, layer: str, selection, seed: int):
    """The selection for one layer: ``('random', K)`` becomes :func:`jaxvis.visualize.draw_filters`
    of ``jax.random.key(seed)`` and the layer; any other selection is returned as it is."""
    if isinstance(selection, tuple) and selection[0] == 'random':
        return draw_filters(jax.random.key(seed), layer, probe.channels(model, layer), selection[1])
    return selection


def _classes(args: argparse.Namespace, model) -> None:
    """``--class`` -> ``--layer logits --filters i,j``; checks the model has ImageNet logits."""
    if args.classes is None:
        if args.layer is None:
            raise JaxvisError('give --layer (or --class for ImageNet classes)')
        args.filters = '0:64' if args.filters is None else args.filters
        return
    if args.filters is not None or args.layer not in (None, 'logits'):
        raise JaxvisError('--class stands for --layer logits --filters ...: give one or the other')
    if probe.layer_shapes(model).get('logits') != (1000,):
        raise JaxvisError(f'--class needs a model with 1000 ImageNet logits; {model.name} has none')
    args.layer, args.filters = 'logits', ','.join(map(str, imagenet.class_indices(args.classes)))


def run(args: argparse.Namespace) -> int:
    model = model_of(args)
    _classes(args, model)
    overrides = {field: getattr(args, field) for _, field, _ in OVERRIDES}
    if args.probability:
        if args.layer == 'all' or probe.spatial(model, args.layer, args.size) is not None:
            raise JaxvisError(f'--probability needs a layer without spatial axes (logits), not {args.layer}')
        overrides['objective'] = class_probability
    cfg = with_rescue_arg(preset(args.preset, steps=args.steps, **overrides), args.rescue)
    if args.normalize is None:
        args.normalize = 'clip' if cfg.param.space != 'input' else 'centred' if cfg.name == 'keras-vis' else 'seed'
    drop_dead = can_drop_dead(cfg) if args.drop_dead is None else args.drop_dead
    if args.best is not None and args.best < 1:
        raise JaxvisError('--best must be >= 1')
    check_margin(args.margin)
    check_seed(args.seed)
    layers = layers_of(model, args.layer)
    snapshot_every = (args.snapshot_every if args.snapshot_every is not None
                      else max(1, cfg.steps // 20) if args.gif else None)
    selection = parse_filter_arg(args.filters)
    plan = [(layer, check_request(model, layer, filters_of_layer(model, layer, selection, args.seed), size=args.size,
                                  config=cfg, batch_size=args.batch_size, drop_dead=drop_dead,
                                  snapshot_every=snapshot_every, width=args.width))
            for layer in layers]  # everything checked before computing anything
    out = check_out_dir(args.out)

    with store.lock(out, multi.lock_name()):
        return _run_locked(args, model, cfg, drop_dead, plan, snapshot_every, out)


def _run_locked(args, model, cfg, drop_dead, plan, snapshot_every, out) -> int:
    """The layers not done yet by a run of the same configuration in ``out`` (see :mod:`jaxvis.edge.store`)."""
    params, weights_info = load_params(args, model, quiet=args.quiet)
    use_compile_cache()
    key = jax.random.key(args.seed)
    manifest = {
        'command': 'filters', 'argv': sys.argv[1:], 'model': model.name, 'size': args.size, 'seed': args.seed,
        'preset': args.preset, 'config': {**cfg.to_dict(), 'conv': args.conv}, 'batch_size': args.batch_size,
        'normalize': args.normalize, 'drop_dead': drop_dead, 'width': check_width(args.width), 'weights': weights_info,
        'environment': environment(), 'layers': {},
    }
    job = {k: manifest[k] for k in ('model', 'size', 'seed', 'preset', 'config', 'batch_size', 'normalize', 'drop_dead')}
    job.update(width_field(args.width))
    job.update(filters=args.filters, format=args.format, best=args.best, margin=args.margin, gif=args.gif,
               snapshot_every=snapshot_every, weights_sha256=weights_info.get('sha256'))
    multi.check_same_job(job)
    lead = hosts.process_index() == 0
    done = {}
    if lead and store.claim(out, job, fingerprint(job), overwrite=args.overwrite):
        done = (store.read_json(os.path.join(out, 'manifest.json')) or {}).get('layers', {})
    done = json.loads(hosts.from_process_0(json.dumps(done).encode()))  # every process follows process 0
    if hosts.process_count() > 1:
        manifest['processes'] = hosts.process_count()
    for layer, idx in plan:
        if layer in done:  # finished by an earlier run of this configuration
            manifest['layers'][layer] = done[layer]
            continue
        mine = hosts.my_share(len(idx))
        bar = _progress_bar((mine.stop - mine.start) * cfg.steps, layer, args.quiet)
        t0 = time.time()
        try:
            res = visualize_filters(params, layer, idx, cfg, model=model, size=args.size, key=key,
                                    batch_size=args.batch_size, snapshot_every=snapshot_every,
                                    drop_dead=drop_dead, progress=bar.update if bar else None, width=args.width)
        finally:
            if bar:
                bar.close()
        part = filters_out.own(res, args.normalize, args.gif)
        filters_out.write_filter_files(out, layer, res, part, args.format)
        whole = filters_out.gather(part)  # every process's filters, on process 0
        seconds = time.time() - t0
        if whole is None:
            continue
        order = best_order(whole, args.best)
        files = filters_out.write_summary(out, layer, whole, order, margin=args.margin, gif=args.gif)
        manifest['layers'][layer] = {
            'seconds': round(seconds, 3), 'files': files,
            'filters': [{'filter': int(f), 'loss': float(l), 'dead': bool(d), 'rescued': bool(r),
                         'file': f'{file_stem(layer)}_{int(f)}.{args.format}'}
                        for f, l, d, r in zip(whole.filters, whole.losses, whole.dead, whole.rescued)],
            'grid_order': [int(whole.filters[i]) for i in order],
            'dead_count': int(whole.dead.sum()),
            'rescued_count': int(whole.rescued.sum()),
        }
        write_json(os.path.join(out, 'manifest.json'), manifest)
        if not args.quiet:
            sys.stderr.write(f'jaxvis: {layer}: {len(idx)} filters, {int(whole.dead.sum())} dead, '
                             f'{seconds:.1f} s -> {out}\n')
    hosts.barrier('jaxvis filters: done')
    return 0


def _progress_bar(total: int, layer: str, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=layer, unit='filter-step', file=sys.stderr, dynamic_ncols=True)
