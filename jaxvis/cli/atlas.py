"""``jaxvis atlas``: every conv layer's filters as a static site (index, a page per layer, a page per filter),
computed in chunks that are kept on disk, so a stopped run continues where it stopped."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys

import jax

from jaxvis.atlas import AtlasConfig, assign, chunks, fingerprint, layer_costs
from jaxvis.atlas import compute
from jaxvis.cli.common import (add_model_args, add_rescue_arg, add_width_arg, load_params, model_of,
                               use_compile_cache, width_field, with_rescue_arg)
from jaxvis.cli.filters import parse_filter_arg
from jaxvis.backend import hosts
from jaxvis.edge import atlas_out, cluster, multi, photos, site, store
from jaxvis.edge.files import environment
from jaxvis.models import probe
from jaxvis.visualize import PRESETS, can_drop_dead, check_request, preset

PHOTO_SIZE = 224  # photo tiles for dataset examples
CROP = 96         # dataset example crops, pixels


def add_parser(sub) -> None:
    p = sub.add_parser('atlas', help='a browsable static site of every layer and filter (resumable)',
                       description='Visualize the filters of every conv layer and write a static site that opens '
                                   'from file:// (index, a page per layer, a page per filter with diverse images and '
                                   'dataset examples). Results are kept per chunk: running the same command again '
                                   'continues where a stopped run left off.')
    p.add_argument('--out', default='atlas', help='output folder (default ./atlas)')
    p.add_argument('--layers', default='all', help="comma-separated layer names, or 'all' conv layers (default)")
    p.add_argument('--filters', default='0:16', help="per layer: '0:16' (default), '0:512:8', '3,7,9' or 'all'")
    add_model_args(p, conv=True)
    p.add_argument('--preset', default='seed', choices=sorted(PRESETS), help='recipe for the filter images (seed)')
    p.add_argument('--steps', type=int, default=None, help="gradient steps (default: the preset's)")
    p.add_argument('--size', type=int, default=128, help='filter image side in pixels (default 128)')
    p.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    add_rescue_arg(p)
    add_width_arg(p)
    p.add_argument('--chunk', type=int, default=16, help='filters per chunk kept on disk (default 16)')
    p.add_argument('--diverse', type=int, default=2, help='filters per layer (the first) with diverse images (2)')
    p.add_argument('--diverse-steps', type=int, default=24, help="steps of the diverse images (lucid preset, 24)")
    p.add_argument('--diverse-size', type=int, default=64, help='diverse image side (default 64)')
    p.add_argument('--examples', type=int, default=4, help='dataset examples per filter (default 4; 0: none)')
    p.add_argument('--photos', default=None, metavar='DIR',
                   help="photos for dataset examples (default: scikit-image's sample photos, fetched once)")
    p.add_argument('--overwrite', action='store_true', help='replace results of another configuration in --out')
    p.add_argument('--quiet', action='store_true', help='no progress bar or messages')
    cluster.add_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = model_of(args)
    cfg = with_rescue_arg(preset(args.preset, steps=args.steps), args.rescue)
    div_cfg = preset('lucid', steps=args.diverse_steps)
    drop_dead = can_drop_dead(cfg)
    layers = list(probe.conv_layers(model)) if args.layers == 'all' else [s.strip() for s in args.layers.split(',')]
    job = AtlasConfig(model=args.model, layers=tuple(layers), filters=args.filters,
                      preset=args.preset, steps=cfg.steps, size=args.size, seed=args.seed, chunk=args.chunk,
                      snapshot_every=max(1, cfg.steps // 10), diverse=args.diverse, diverse_n=3,
                      diverse_steps=args.diverse_steps, diverse_size=args.diverse_size, examples=args.examples)
    selection = parse_filter_arg(args.filters)
    idx = {layer: check_request(model, layer, selection, size=job.size, config=cfg, batch_size=job.chunk,
                                drop_dead=drop_dead, snapshot_every=job.snapshot_every, width=args.width)
           for layer in layers}
    if job.diverse:
        for layer in layers:
            probe.check_size(model, layer, job.diverse_size)
    paths = (photos.photo_files(args.photos) if args.photos else photos.default_photos()) if job.examples else []
    tiles, labels = photos.tiles(paths, PHOTO_SIZE) if paths else (None, [])

    with store.lock(args.out, multi.lock_name()):
        params, weights_info = load_params(args, model, quiet=args.quiet)
        use_compile_cache()
        # 'rescue' only where it differs from what the preset did before the job recorded it (lucid
        # rescued, the others did not), so that an atlas begun then resumes
        rescue = {} if (cfg.rescue is not None) == (args.preset == 'lucid') else {'rescue': cfg.rescue is not None}
        described = {**job.to_dict(), 'conv': args.conv, **rescue, **width_field(args.width),
                     'weights_sha256': weights_info.get('sha256'),
                     'photos_sha256': None if tiles is None else hashlib.sha256(tiles.tobytes()).hexdigest()}
        multi.check_same_job(described)
        shared, lead = multi.shared_folder(args.out), hosts.process_index() == 0
        resumed = (store.claim(args.out, described, fingerprint(described), overwrite=args.overwrite)
                   if lead or not shared else True)
        hosts.barrier('jaxvis atlas: claimed')  # in a shared folder, process 0 claims it first
        shapes = probe.layer_shapes(model, params, job.size)
        plan = chunks(job, idx, cfg.steps, layer_costs(shapes, layers))
        owner = assign(plan, hosts.process_count())
        mine = [c for c, p in zip(plan, owner) if p == hosts.process_index()]
        todo = [c for c in mine if store.finished(args.out, c.name) is None]
        if not args.quiet and resumed:
            sys.stderr.write(f'jaxvis: continuing in {args.out}: {len(mine) - len(todo)} of {len(mine)} chunks '
                             'already done\n')
        bar = _bar(sum(c.cost for c in mine), sum(c.cost for c in mine if c not in todo), args.quiet)
        key = jax.random.key(job.seed)
        info = {'model': model.name, 'weights': weights_info, 'config': described, 'environment': environment()}
        channels = {layer: int(shapes[layer][-1]) for layer in layers}
        single = hosts.process_count() == 1
        try:
            for i, chunk in enumerate(todo):
                if bar:
                    bar.set_description(f'{chunk.layer} {chunk.kind}')
                tick, settle = _ticker(bar, chunk)
                if chunk.kind == 'filters':
                    res = compute.filter_chunk(params, chunk, cfg, model=model, size=job.size, key=key,
                                               snapshot_every=job.snapshot_every, drop_dead=drop_dead,
                                               batch_size=job.chunk, progress=tick(len(chunk.filters) * cfg.steps),
                                               width=args.width)
                    rec = atlas_out.write_filters(args.out, chunk, res, 'clip' if cfg.param.space != 'input' else 'seed')
                elif chunk.kind == 'diverse':
                    res = compute.diverse_chunk(params, chunk, div_cfg, model=model, n=job.diverse_n,
                                                size=job.diverse_size, key=key,
                                                progress=tick(job.diverse_n * job.diverse_steps))
                    rec = atlas_out.write_diverse(args.out, chunk, res)
                else:
                    res = compute.examples_chunk(params, chunk, tiles, model=model, k=job.examples, crop=CROP)
                    rec = atlas_out.write_examples(args.out, chunk, res, labels)
                store.finish(args.out, chunk.name, rec)
                settle()
                if single and (i + 1 == len(todo) or todo[i + 1].layer != chunk.layer):  # a layer: the site so far
                    site.write_site(args.out, info, atlas_out.layer_entries(args.out, plan, channels))
        finally:
            if bar:
                bar.close()
        if not shared:
            _send_to_lead(args.out, plan, mine)
        hosts.barrier('jaxvis atlas: computed')
        if lead:
            site.write_site(args.out, info, atlas_out.layer_entries(args.out, plan, channels))
    if not args.quiet and lead:
        sys.stderr.write(f'jaxvis: atlas of {len(layers)} layers in {args.out}: open {args.out}/index.html\n')
    return 0


def _send_to_lead(out: str, plan, mine) -> None:
    """A folder per host: every process sends process 0 the files and records of its finished chunks that
    process 0 lacks (through JAX); process 0 writes them, each chunk's record after its files."""
    lacking = set(json.loads(hosts.from_process_0(json.dumps(
        [c.name for c in plan if store.finished(out, c.name) is None]).encode())))
    files = {}
    for c in mine:
        rec = store.finished(out, c.name) if c.name in lacking else None
        if rec is not None:
            files.update(multi.read_files(out, [*atlas_out.record_files(rec), f'{store.CHUNKS}/{c.name}.json']))
    sent = hosts.gather_bytes(multi.pack(files))
    if hosts.process_index() == 0:
        for data in sent[1:]:
            got = multi.unpack(data)
            records = {k: v for k, v in got.items() if k.startswith(f'{store.CHUNKS}/')}
            multi.write_files(out, {k: v for k, v in got.items() if k not in records})
            multi.write_files(out, records)


def _bar(total: float, done: float, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=done, unit='step', file=sys.stderr, dynamic_ncols=True,
                bar_format='{desc} {percentage:3.0f}%|{bar}| {elapsed} elapsed, ETA {remaining}')


def _ticker(bar, chunk):
    """``(tick(units) -> progress callback, settle())``: the callback moves the bar by the chunk's share
    per unit of work; ``settle`` adds whatever the chunk's estimate left (so the bar ends at its total)."""
    moved = [0.0]

    def tick(units: int):
        if bar is None:
            return None
        per = chunk.cost / max(1, units)

        def progress(n: int) -> None:
            moved[0] += n * per
            bar.update(n * per)
        return progress

    def settle():
        if bar is not None and chunk.cost > moved[0]:
            bar.update(chunk.cost - moved[0])
    return tick, settle
