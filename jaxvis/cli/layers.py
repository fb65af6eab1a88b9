"""``jaxvis layers``: every layer of the model with its kind, filter count and output size."""
from __future__ import annotations

import argparse

from jaxvis.cli.common import add_model_args, load_params
from jaxvis.errors import JaxvisError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        'layers', help='list the layers, their filter counts and output sizes',
        description='List each layer of the model (kind, filters, output size at --size) and the weights '
                    'in use. Finds or fetches the weights like `jaxvis weights --fetch`.')
    add_model_args(p)
    p.add_argument('--size', type=int, default=224, metavar='N', help='input size N x N (default: 224)')
    p.add_argument('--quiet', action='store_true', help='no progress bars or notes on stderr')
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.size < 1:
        raise JaxvisError(f'--size must be a positive number of pixels, not {args.size}')
    spec, params, info = load_params(args, quiet=args.quiet)
    print(f'model {spec.name}, input {args.size}x{args.size}, weights {info["name"]} ({info["source"]}, '
          f'sha256 {info["sha256"][:12]})')
    print(table(spec, params, args.size))
    return 0


def table(spec, params: dict, size: int) -> str:
    """The layer table as text: name, kind, filters, output HxW (``-`` where the input is too small)."""
    width = max(len('layer'), *(len(n) for n in spec.layer_names))
    lines = [f'{"layer":<{width}}  {"kind":<4}  {"filters":>7}  {"output":>9}  {"params":>9}']
    for name, kind, channels, _ in spec.layers:
        out = spec.output_size(name, size)
        hw = f'{out}x{out}' if out >= 1 else '-'
        n = sum(int(v.size) for v in params[name].values()) if name in params else 0
        lines.append(f'{name:<{width}}  {kind:<4}  {channels:>7}  {hw:>9}  {n:>9,}')
    return '\n'.join(lines)
