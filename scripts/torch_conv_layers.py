#!/usr/bin/env python
"""Per-layer cost of VGG16's convolutions in PyTorch: the peer column of ``scripts/conv_layers.py --torch``.

Run with a Python that has torch (a scratch virtualenv; jaxvis never depends on torch). For each conv
shape ``side,c_in,c_out`` given, times a 3x3 'same' convolution forward and its input gradient
(``torch.autograd.grad`` with ones as the cotangent, no weight gradient), each the median of
``--repeats`` after a warm-up, NCHW and channels_last, and prints one JSON object:
``{"torch": version, "threads": n, "batch": b, "ms": {"side,c_in,c_out": {"nchw": ms, "channels_last": ms}}}``
(ms = forward + input gradient).

  /path/to/torch-venv/bin/python scripts/torch_conv_layers.py --batch 8 --shapes 128,3,64 128,64,64
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch


def time_shape(side: int, c_in: int, c_out: int, batch: int, layout: str, repeats: int) -> float:
    fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False).to(memory_format=fmt)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2 / (9 * c_in)) ** .5)
    conv.weight.requires_grad_(False)
    x = torch.randn((batch, c_in, side, side), generator=g).contiguous(memory_format=fmt)
    ct = torch.ones((batch, c_out, side, side)).contiguous(memory_format=fmt)

    def fwd():
        with torch.no_grad():
            return conv(x)

    xg = x.detach().requires_grad_(True)
    y = conv(xg)  # the graph once; grad() times the input gradient alone

    def grad():
        return torch.autograd.grad(y, xg, ct, retain_graph=True)[0]

    total = 0.0
    for fn in (fwd, grad):
        fn()
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        total += statistics.median(runs)
    return total * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--shapes', nargs='+', required=True, help='side,c_in,c_out ...')
    a = ap.parse_args(argv)
    ms = {}
    for s in a.shapes:
        side, c_in, c_out = map(int, s.split(','))
        ms[s] = {layout: time_shape(side, c_in, c_out, a.batch, layout, a.repeats)
                 for layout in ('nchw', 'channels_last')}
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'batch': a.batch, 'ms': ms}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
