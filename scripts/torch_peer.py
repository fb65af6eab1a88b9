#!/usr/bin/env python
"""The seed job in PyTorch, the peer that ``scripts/benchmark.py --torch PYTHON`` runs in the same session.

Run it with a Python that has torch (a scratch virtualenv; jaxvis never depends on torch). It does what
jaxvis's ``seed`` preset does, in PyTorch's own idiom: VGG16's convolutions, ReLUs and 2x2 max-pools up
to block5_conv1 (random He-scaled weights of the real shapes, no weight gradients), a batch of model
inputs at 128x128, the objective the mean of each image's own filter, and one step of seed 003's ascent
per iteration, ``x += g / (sqrt(mean(g^2)) + 1e-5)`` per image. Every filter is computed; nothing dropped.

For each layout (NCHW, channels_last) and batch size it warms up, then times ``--steps`` steps (median
of ``--repeats``) and prints one JSON object: ``{"torch": version, "threads": n, "results": [{"layout",
"batch", "dtype", "filter_steps_per_s", "runs"}, ...]}``. ``--bf16`` adds bf16 autocast runs (AMX where
the CPU has it).

  /path/to/torch-venv/bin/python scripts/torch_peer.py --batch-sizes 8,16,32 --steps 10
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch

VGG16_TO_BLOCK5_CONV1 = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512)


def vgg_features(seed: int = 0) -> torch.nn.Sequential:
    """VGG16 up to block5_conv1 (its ReLU included), weights frozen."""
    g = torch.Generator().manual_seed(seed)
    layers, c_in = [], 3
    for v in VGG16_TO_BLOCK5_CONV1:
        if v == 'M':
            layers.append(torch.nn.MaxPool2d(2))
            continue
        conv = torch.nn.Conv2d(c_in, v, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2 / (9 * c_in)) ** .5)
            conv.bias.copy_(torch.randn(v, generator=g) * 0.1)
        layers += [conv, torch.nn.ReLU()]
        c_in = v
    net = torch.nn.Sequential(*layers).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def time_config(net, layout: str, batch: int, size: int, steps: int, repeats: int, bf16: bool) -> list[float]:
    fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
    net = net.to(memory_format=fmt)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand((batch, 3, size, size), generator=g) * 20 + 118 - 123.68).contiguous(memory_format=fmt)
    f = torch.arange(batch) % 512
    cast = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step(x):
        x = x.detach().requires_grad_(True)
        with cast():
            a = net(x)                                          # [B, 512, H, W]
        loss = a[torch.arange(batch), f].float().mean(dim=(1, 2)).sum()
        (grad,) = torch.autograd.grad(loss, x)
        norm = grad.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-5
        return (x + grad / norm).detach()

    for _ in range(2):
        x = step(x)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            x = step(x)
        runs.append(batch * steps / (time.perf_counter() - t0))
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    ap.add_argument('--batch-sizes', default='8,16,32')
    ap.add_argument('--layouts', default='nchw,channels_last')
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--bf16', action='store_true', help='also time bf16 autocast (AMX where the CPU has it)')
    args = ap.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    net = vgg_features()
    results = []
    for dtype in ('float32', 'bfloat16') if args.bf16 else ('float32',):
        for layout in args.layouts.split(','):
            for batch in (int(b) for b in args.batch_sizes.split(',')):
                runs = time_config(net, layout, batch, args.size, args.steps, args.repeats, dtype == 'bfloat16')
                results.append({'layout': layout, 'batch': batch, 'dtype': dtype,
                                'filter_steps_per_s': statistics.median(runs), 'runs': runs})
                print(f'torch {dtype} {layout} batch {batch}: {results[-1]["filter_steps_per_s"]:.2f} filter-steps/s',
                      file=sys.stderr, flush=True)
    json.dump({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'results': results}, sys.stdout)
    print()
    return 0


if __name__ == '__main__':
    sys.exit(main())
