#!/usr/bin/env python
"""Lucent's side of the Lucid workload, run by ``scripts/lucid_workload.py --lucent PYTHON``.

Run it with a Python that has Lucent (a scratch virtualenv; jaxvis never depends on torch):
``torch==2.14.1 torchvision==0.29.1``, then ``torch-lucent==0.1.8 kornia==0.4.1`` with ``--no-deps``.
It builds VGG16's convolutions up to ``--layer`` from the ``.npz`` of weights that ``lucid_workload.py``
writes (jaxvis's own params, ``kernel [3, 3, C_in, C_out]``), with Keras's caffe preprocessing inside
the model (RGB in [0, 1] -> 0..255 -> BGR -> minus the ImageNet mean), and runs Lucent's defaults:
``render_vis(model, objective, param.image(size, batch=B), Adam 0.05, standard_transforms,
thresholds=(steps,), preprocess=False, fixed_image_size=size)``. Modes: ``sequential`` (one call per
filter, as Lucent's notebooks do) and ``batched`` (one call, ``batch=B``, the sum of each image's own
channel objective), and ``batched_channels_last`` (the same with the network and image in channels_last
memory order); a mode ending in ``_bf16`` runs the network under ``torch.autocast('cpu',
dtype=torch.bfloat16)`` (AMX or AVX-512 BF16 convolutions where the CPU has them; the image stays float32). Writes ``--out`` (``.npz``: the final images per mode, ``[F, size, size, 3]`` in
[0, 1]) and prints one JSON object with the seconds of each mode.
"""
from __future__ import annotations

import argparse
import collections
import json
import time

import numpy as np
import torch
from lucent.optvis import objectives, param, render

VGG16 = (('block1_conv1', 64), ('block1_conv2', 64), 'M', ('block2_conv1', 128), ('block2_conv2', 128), 'M',
         ('block3_conv1', 256), ('block3_conv2', 256), ('block3_conv3', 256), 'M', ('block4_conv1', 512),
         ('block4_conv2', 512), ('block4_conv3', 512), 'M', ('block5_conv1', 512), ('block5_conv2', 512),
         ('block5_conv3', 512))
BGR_MEAN = (103.939, 116.779, 123.68)


class Caffe(torch.nn.Module):
    """Keras's ``preprocess_input`` (caffe mode) for RGB in [0, 1], NCHW."""

    def forward(self, x):
        x = x[:, [2, 1, 0]] * 255.0
        return x - torch.tensor(BGR_MEAN, dtype=x.dtype).view(1, 3, 1, 1)


def vgg(weights: dict, upto: str) -> torch.nn.Module:
    """``caffe`` then VGG16's layers up to ``upto``; each conv layer a named ``Sequential(conv, relu)``."""
    net, c_in, n_pool = torch.nn.Sequential(), 3, 0
    net.add_module('caffe', Caffe())
    for item in VGG16:
        if item == 'M':
            n_pool += 1
            net.add_module(f'pool{n_pool}', torch.nn.MaxPool2d(2))
            continue
        name, c_out = item
        conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weights[f'{name}/kernel'].transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.from_numpy(weights[f'{name}/bias']))
        net.add_module(name, torch.nn.Sequential(conv, torch.nn.ReLU()))
        c_in = c_out
        if name == upto:
            break
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class ChannelsLast(torch.nn.Module):
    """The image in channels_last memory order, for a network whose weights are (PyTorch's faster CPU
    convolutions with oneDNN on some machines)."""

    def forward(self, x):
        return x.contiguous(memory_format=torch.channels_last)


def channels_last(net: torch.nn.Sequential) -> torch.nn.Sequential:
    """``net`` with the image made channels_last first (its modules keep their names: Lucent's hooks)."""
    mods = [('channels_last', ChannelsLast())] + list(net.named_children())
    return torch.nn.Sequential(collections.OrderedDict(mods)).to(memory_format=torch.channels_last).eval()


class Autocast(torch.nn.Sequential):
    """The network (its modules keep their names) under ``torch.autocast('cpu', dtype=torch.bfloat16)``;
    Lucent's param, transforms and Adam stay float32."""

    def __init__(self, children):
        super().__init__(collections.OrderedDict(children))

    def forward(self, x):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return super().forward(x)


def run(net, layer: str, filters: list[int], size: int, steps: int, batched: bool) -> np.ndarray:
    """Final images ``[F, size, size, 3]`` in [0, 1]."""
    opt = lambda params: torch.optim.Adam(params, lr=5e-2)
    kw = {'optimizer': opt, 'thresholds': (steps,), 'preprocess': False, 'fixed_image_size': size,
          'progress': False, 'show_image': False}
    if batched:
        obj = sum(objectives.channel(f'{layer}', f, batch=i) for i, f in enumerate(filters))
        return render.render_vis(net, obj, lambda: param.image(size, batch=len(filters)), **kw)[-1]
    return np.concatenate([render.render_vis(net, f'{layer}:{f}', lambda: param.image(size), **kw)[-1]
                           for f in filters])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--weights', required=True, help='.npz from lucid_workload.py')
    ap.add_argument('--layer', default='block4_conv1')
    ap.add_argument('--filters', default='0,1,2,3')
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--steps', type=int, default=256)
    ap.add_argument('--modes', default='sequential,batched,batched_channels_last')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', required=True)
    a = ap.parse_args(argv)
    filters = [int(f) for f in a.filters.split(',')]
    net = vgg(dict(np.load(a.weights)), a.layer)
    out, seconds = {}, {}
    for mode in a.modes.split(','):
        torch.manual_seed(a.seed)
        t = time.perf_counter()
        model = channels_last(net) if 'channels_last' in mode else net
        if mode.endswith('_bf16'):
            model = Autocast(model.named_children()).eval()
        out[mode] = run(model, a.layer, filters, a.size, a.steps, mode.startswith('batched'))
        seconds[mode] = time.perf_counter() - t
    np.savez(a.out, **out)
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'seconds': seconds}))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
