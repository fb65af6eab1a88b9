"""Pieces shared by the subcommands: the model/weights options, loading params, the compile cache."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys

from jaxvis.edge import tuning
from jaxvis.edge import weights as W
from jaxvis.edge.locations import OFFICIAL, WHEELS, cache_dir
from jaxvis.errors import JaxvisError
from jaxvis.models import Model, available_models, get_model, load_keras_h5
from jaxvis.visualize.engine import WIDTH, check_width


def add_model_args(parser: argparse.ArgumentParser, *, conv: bool = False) -> None:
    parser.add_argument('--model', default='vgg16', metavar='NAME',
                        help=f'network to look into: {", ".join(available_models())}, or MODULE:CALLABLE, a function '
                             'of no arguments returning a jaxvis Model with its params (default: vgg16)')
    parser.add_argument('--weights', default=None, metavar='PATH',
                        help='weights file (Keras .h5 for VGG, PyTorch .pth for EfficientNet-Lite); default: '
                             'found or fetched by `jaxvis weights` rules')
    if conv:
        from jaxvis.backend.conv_plan import CONV_MODES
        parser.add_argument('--conv', default='auto', choices=CONV_MODES,
                            help="VGG's convolution algorithms (default 'auto': Winograd for the layers where it "
                                 "was measured faster on CPU, XLA's own on GPU/TPU; 'direct': XLA's own everywhere)")


def model_of(args: argparse.Namespace) -> Model:
    """The model named by ``--model`` (and ``--conv``), checked; no weights are read.

    ``MODULE:CALLABLE`` imports MODULE (the current folder first on the path) and calls CALLABLE(), which
    returns a :class:`~jaxvis.models.Model` carrying its params, or a ``(Model, params)`` pair.
    """
    options = {'conv': args.conv} if getattr(args, 'conv', None) not in (None, 'auto') else {}
    if ':' not in args.model:
        return get_model(args.model, **options)
    if options:
        raise JaxvisError('--conv applies to the built-in VGG models only')
    cached = getattr(args, '_model', None)
    if cached is None:
        cached = args._model = _call_model(args.model)
    return cached


def _call_model(spec: str) -> Model:
    module_name, _, attr = spec.partition(':')
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as e:
        raise JaxvisError(f'--model {spec}: no module {e.name!r} (run from the folder that holds it, or install it)') \
            from None
    except AttributeError:
        raise JaxvisError(f'--model {spec}: module {module_name!r} has no {attr!r}') from None
    out = fn()
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Model):
        out = dataclasses.replace(out[0], params=out[1], cache={})
    if not isinstance(out, Model):
        raise JaxvisError(f'--model {spec}: {attr}() must return a jaxvis Model (or a (Model, params) pair), '
                          f'got {type(out).__name__}')
    if out.params is None:
        raise JaxvisError(f'--model {spec}: the model carries no params (return them with it)')
    return out


LEGACY_WIDTH = 8  # the width of every job begun before --width existed (their job records none)


def add_width_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--width', type=int, default=None,
                        help=f'images per operation on CPU (default {WIDTH}); a filter\'s image depends on it, '
                             'never on the batch. 4 halves a run of 1-4 filters; the same cost per filter on '
                             'more. Accelerators ignore it')


def width_field(width: int | None) -> dict:
    """What a job records of ``--width``: nothing for :data:`LEGACY_WIDTH` (8, the width of every job begun
    before the option, whose job records none: they resume), else ``{'width': w}``. It stays 8 if the
    engine's default changes, so that an old folder never resumes at another width."""
    w = check_width(width)
    return {} if w == LEGACY_WIDTH else {'width': w}


def add_rescue_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--rescue', default=None, action=argparse.BooleanOptionalAction,
                        help="rerun the filters left dead with the preset's rescue config (default: on where the "
                             'preset has one: lucid, maco); --no-rescue keeps the first run')


def with_rescue_arg(cfg, rescue: bool | None):
    """``cfg`` as ``--rescue`` / ``--no-rescue`` asks (None: as the preset made it)."""
    if rescue is False:
        return dataclasses.replace(cfg, rescue=None)
    if rescue and cfg.rescue is None:
        raise JaxvisError(f'--rescue: preset {cfg.name} has no rescue (lucid and maco do)')
    return cfg


def load_params(args: argparse.Namespace, model, *, quiet: bool = False):
    """Resolve and load the weights for ``model`` named by ``--weights`` (or the usual places).

    Returns ``(params, info)``; ``info`` is the weights' name, source, path and sha256, for manifests.
    Says on stderr which weights are in use.
    """
    if model.params is not None:  # a model of one's own, with its params
        if args.weights is not None:
            raise JaxvisError(f'--weights applies to built-in models; {args.model} carries its own params')
        return model.params, W.describe_params(model.params, args.model)
    if model.name in OFFICIAL or model.name in WHEELS:
        path = W.resolve(model.name, args.weights, progress=not quiet)
    else:
        path = args.weights or os.environ.get('JAXVIS_WEIGHTS')
        if not path:
            raise JaxvisError(f'model {model.name!r} has no weights file jaxvis knows: pass --weights PATH')
    params = model.load(path) if model.load is not None else load_keras_h5(path, model=model.name)
    info = W.describe(path)
    if not quiet:
        sys.stderr.write(f'jaxvis: weights {info["name"]} ({info["source"]}, sha256 {info["sha256"][:12]}) '
                         f'from {info["path"]}\n')
    return params, info


def use_compile_cache() -> None:
    """Keep XLA's compiled steps on disk (JAX's persistent compilation cache) so that a rerun with the
    same shapes skips compiling: ``<jaxvis cache>/xla``. A cache folder the user configured wins;
    ``JAXVIS_COMPILE_CACHE=0`` turns it off; a folder that cannot be created means compiling every time.
    Every compiled function is kept, the small ones too (JAX keeps only those that took 1 s or more by
    default; a rerun of ``jaxvis filters`` then spent 0.9 s more recompiling them), unless the user set
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``.
    Also loads this machine's measured convolution plan (``jaxvis tune``) from the cache folder.
    """
    import jax

    tuning.use_disk_cache()

    if os.environ.get('JAXVIS_COMPILE_CACHE', '1') == '0' or jax.config.jax_compilation_cache_dir:
        return
    path = cache_dir() / 'xla'
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update('jax_compilation_cache_dir', str(path))
    if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
        jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
