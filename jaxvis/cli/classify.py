"""``jaxvis classify``: the top classes of a photo for a model with ImageNet logits (a check that it is right)."""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.cli.common import add_model_args, load_params, model_of
from jaxvis.edge.images import RESIZES, fit, read_image
from jaxvis.errors import JaxvisError
from jaxvis.models import forward, imagenet, probe
from jaxvis.util import check_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        'classify', help='the top ImageNet classes of a photo (index, name, probability)',
        description='Print the top classes of a photo, one line each: class index, name, probability '
                    "(the softmax of the model's 1000 logits). The photo is brought to --size x --size with "
                    "Pillow's bicubic resize: 'squash' resizes the whole photo (the reference run), "
                    "'center-crop' takes the centre square first, as TensorFlow's EfficientNet evaluation.")
    p.add_argument('photo', help='an image file Pillow reads')
    add_model_args(p)
    p.add_argument('--top', type=int, default=5, metavar='K', help='classes to print (default 5)')
    p.add_argument('--size', type=int, default=224, metavar='N', help='input side in pixels (default 224)')
    p.add_argument('--resize', default='squash', choices=RESIZES, help='how the photo becomes N x N (default squash)')
    p.add_argument('--quiet', action='store_true', help='no notes on stderr')
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_int('top', args.top, low=1, high=1000)
    check_int('size', args.size, low=1)
    model = model_of(args)
    if probe.layer_shapes(model).get('logits') != (1000,):
        raise JaxvisError(f'model {model.name} has no 1000-way logits layer: classify needs an ImageNet classifier')
    probe.check_size(model, 'logits', args.size)
    rgb = fit(read_image(args.photo)[0], args.size, args.resize)
    params, _ = load_params(args, model, quiet=args.quiet)
    logits = forward(model, 'logits')(params, model.preprocess(jnp.asarray(rgb[None])))['logits'][0]
    probs = np.asarray(jax.nn.softmax(logits))
    for i in np.argsort(-probs, kind='stable')[:args.top]:
        print(f'{int(i):>4}  {imagenet.class_name(int(i)):<30}  {probs[i]:.4f}')
    return 0
