"""``jaxvis layers``: every layer of the model with its kind, filter count and output size."""
from __future__ import annotations

import argparse

import jax
import numpy as np

from jaxvis.cli.common import add_model_args, load_params, model_of
from jaxvis.models import probe
from jaxvis.util import check_int


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
    check_int('size', args.size, low=1)
    model = model_of(args)
    params, info = load_params(args, model, quiet=args.quiet)
    print(f'model {model.name}, input {args.size}x{args.size}, weights {info["name"]} ({info["source"]}, '
          f'sha256 {info["sha256"][:12]})')
    print(table(model, params, args.size))
    return 0


def table(model, params, size: int) -> str:
    """The layer table as text: name, kind, filters, output HxW (``-`` where the input is too small)."""
    shapes = probe.layer_shapes(model, params)
    width = max(len('layer'), *(len(n) for n in shapes))
    lines = [f'{"layer":<{width}}  {"kind":<5}  {"filters":>7}  {"output":>9}  {"params":>9}']
    for name, shape in shapes.items():
        hw = probe.spatial(model, name, size, params)
        out = '-' if hw is not None and min(hw) < 1 else ('1' if hw is None else f'{hw[0]}x{hw[1]}')
        own = params.get(name) if isinstance(params, dict) else None
        n = sum(int(np.size(v)) for v in jax.tree_util.tree_leaves(own)) if own is not None else 0
        kind = model.kinds.get(name, 'layer') if model.kinds is not None else 'layer'
        lines.append(f'{name:<{width}}  {kind:<5}  {shape[-1]:>7}  {out:>9}  {n:>9,}')
    return '\n'.join(lines)
