"""Pieces shared by the subcommands: model/weights options, loading params, atomic writes."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import contextmanager

from jaxvis.errors import JaxvisError
from jaxvis.models import available_models, get_model, load_keras_h5


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', default='vgg16', choices=available_models(),
                        help='network to look into (default: vgg16)')
    parser.add_argument('--weights', default=None, metavar='PATH',
                        help='Keras .h5 weights; default: found or fetched by `jaxvis weights` rules')


def load_params(args: argparse.Namespace, *, quiet: bool = False):
    """Resolve and load the weights named by ``--model/--weights``.

    Returns ``(spec, params, info)``; ``info`` is the weights' name, source, path and sha256,
    for manifests. Says on stderr which weights are in use.
    """
    from jaxvis import weights as W

    spec = get_model(args.model)
    if spec.name == 'tiny':
        raise JaxvisError('the tiny model is for tests and has no weights file')
    path = W.resolve(spec.name, args.weights, progress=not quiet)
    params = load_keras_h5(path, model=spec.name)
    info = W.describe(path)
    if not quiet:
        sys.stderr.write(f'jaxvis: weights {info["name"]} ({info["source"]}, sha256 {info["sha256"][:12]}) '
                         f'from {info["path"]}\n')
    return spec, params, info


def use_compile_cache() -> None:
    """Keep XLA's compiled steps on disk (JAX's persistent compilation cache) so that a rerun with the
    same shapes skips compiling: ``<jaxvis cache>/xla``. A cache folder the user configured wins;
    ``JAXVIS_COMPILE_CACHE=0`` turns it off; a folder that cannot be created means compiling every time.
    """
    import jax

    from jaxvis.weights import cache_dir

    if os.environ.get('JAXVIS_COMPILE_CACHE', '1') == '0' or jax.config.jax_compilation_cache_dir:
        return
    path = cache_dir() / 'xla'
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update('jax_compilation_cache_dir', str(path))


def ensure_out_dir(path: str) -> str:
    """Create ``path`` if needed and check it is writable; one clear JaxvisError otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise JaxvisError(f'cannot create output folder {path}: {e.strerror}') from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise JaxvisError(f'output folder {path} is not writable')
    return path


@contextmanager
def atomic_path(final: str):
    """Yield a temporary path next to ``final``; move it over ``final`` only if the block succeeds.

    A crash or Ctrl-C inside the block leaves no partial ``final`` behind.
    """
    folder = os.path.dirname(os.path.abspath(final))
    suffix = os.path.splitext(final)[1]
    fd, tmp = tempfile.mkstemp(prefix='.jaxvis-', suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
