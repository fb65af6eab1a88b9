"""``jaxvis tune``: measure, on this machine, which algorithm each VGG convolution should use."""
from __future__ import annotations

import argparse
import os

from jaxvis.backend import tune, tune_chain
from jaxvis.edge import tuning
from jaxvis.errors import JaxvisError
from jaxvis.models.vgg import BLOCKS, _convs, vgg_model
from jaxvis.models.winograd import KERNEL
from jaxvis.util import check_int
from jaxvis.visualize.engine import WIDTH, check_width


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        'tune', help="measure the fastest convolution algorithm per VGG layer on this machine",
        description='Time a direct convolution and Winograd F(2x2,3x3) / F(4x4,3x3) (forward and input '
                    "gradient) for each convolution of the model at the engine's batch, print the table, and "
                    "keep it in jaxvis's cache for conv='auto' (measured once per CPU model and jax version).")
    p.add_argument('--model', default='vgg16', choices=('vgg16', 'vgg19'), help='VGG to tune (default vgg16)')
    p.add_argument('--size', type=int, default=128, help='image side in pixels (default 128)')
    p.add_argument('--layer', default='block5_conv1', help='deepest layer (default block5_conv1)')
    p.add_argument('--width', type=int, default=None,
                   help=f'images per operation, as filters/atlas --width (default {WIDTH})')
    p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                   help="the network's precision, as the library's dtype= (bfloat16: direct against F(2x2) "
                        'with bf16 products; default float32)')
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_int('size', args.size, low=1)
    width = check_width(args.width)
    convs = _convs(BLOCKS[args.model], args.size, args.layer)
    if convs[-1][0] != args.layer:
        raise JaxvisError(f'{args.layer} is not a convolution of {args.model}')
    os.environ['JAXVIS_TUNE'] = '1'
    tune.clear()
    tuning.use_disk_cache()  # re-measure these shapes; keep the rest (other widths, sizes, layers)
    impls = tune.impls(args.dtype)
    print(f'{tune.machine_id()}; batch {width} per call, {args.size}x{args.size}, {args.dtype}; '
          'ms for forward + input gradient (x = speed-up over direct)')
    print('| layer | side | in -> out | ' + ' | '.join(impls) + ' | auto picks |')
    print('|---' * (len(impls) + 4) + '|')
    for name, side, c_in, c_out in convs:
        if c_in < tune.MIN_CHANNELS:
            print(f'| {name} | {side} | {c_in} -> {c_out} | ' + ' | '.join('-' for _ in impls) + ' | direct |')
            continue
        t = tune.measure(KERNEL, tune.Key(side, c_in, c_out, width, args.dtype))
        cells = [f'{1e3 * t[i]:.1f} (x{t["direct"] / t[i]:.2f})' for i in impls]
        print(f'| {name} | {side} | {c_in} -> {c_out} | ' + ' | '.join(cells) + f' | {tune.choose(t)} |', flush=True)
    stem = vgg_model(args.model).stem(args.size, args.layer) if args.dtype == 'float32' else None  # bf16: one program
    if stem is not None:  # the staged step's stem: one image per call, one choice for the chain
        chain = [tune.Key(side, c_in, c_out, 1) for _, side, c_in, c_out in _convs(BLOCKS[args.model], args.size, stem)]
        t = tune_chain.measure_chain(KERNEL, chain)
        cells = ', '.join(f'{i} {1e3 * t[i]:.1f}' for i in t)
        print(f'stem up to {stem}, one image per call (the staged step), ms per image: {cells}; '
              f'auto picks {tune.choose(t)}', flush=True)
    saved = tuning.save()
    print(f'kept in {saved}' if saved else 'could not write the cache folder: the table was not kept')
    return 0
