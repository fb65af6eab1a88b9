"""Read Keras's ResNet50 / InceptionV3 weight files into Flax params (pure, no download).

Layouts, as Keras writes them:

1. legacy HDF5 (the official ``*_notop.h5`` files, tf.keras ``save_weights('x.h5')``, Keras 3 ``save('x.h5')``
   under ``model_weights``): attr ``layer_names``, one group per layer with attr ``weight_names``. Keras
   loads these **by the order of the layers with weights**, not by name, and so does this loader: the
   official InceptionV3 file's ``conv2d_1`` is a fresh model's ``conv2d``. The order is Keras's own
   (:mod:`jaxvis.models.keras_order`);
2. Keras 3 ``.weights.h5``: ``layers/conv2d_<k>/vars/<i>``, ``layers/batch_normalization_<k>/vars/<i>``,
   where ``<k>`` counts that class of layer in Keras's order.

Params: ``{layer: {'kernel' [kh, kw, C_in, C_out], 'bias' [C_out]}}`` for a convolution,
``{layer: {'gamma', 'beta', 'moving_mean', 'moving_variance'}}`` (each ``[C]``) for a BatchNorm; numpy
float32; InceptionV3's convolutions have no bias and its BatchNorms no gamma.
"""
from __future__ import annotations

import functools
import os
import re

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.errors import WeightsError
from jaxvis.models import keras_order
from jaxvis.models.inception import InceptionV3
from jaxvis.models.keras_layers import BN_ROLES, CONV_ROLES
from jaxvis.models.resnet import ResNet50

MODULES = {'resnet50': (ResNet50, 32), 'inception_v3': (InceptionV3, 75)}  # module, smallest input side
ORDER = {'resnet50': keras_order.RESNET50, 'inception_v3': keras_order.INCEPTION_V3}
FILES = {'resnet50': 'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5',
         'inception_v3': 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5'}


def init(model: str, key: jax.Array) -> dict:
    """Random params of ``model`` ('resnet50' or 'inception_v3') in the layout this loader returns."""
    module, side = MODULES[model]
    return module().init(key, jnp.zeros((1, side, side, 3), jnp.float32))['params']


@functools.cache
def expected(model: str) -> tuple[tuple[str, tuple[str, ...], tuple[tuple[int, ...], ...]], ...]:
    """``(layer, roles, shapes)`` of every layer with weights, in Keras's order (from ``jax.eval_shape``)."""
    shapes = jax.eval_shape(functools.partial(init, model), jax.random.key(0))
    rows = []
    for layer in ORDER[model]:
        roles = tuple(r for r in (CONV_ROLES + BN_ROLES) if r in shapes[layer])
        rows.append((layer, roles, tuple(tuple(shapes[layer][r].shape) for r in roles)))
    return tuple(rows)


def _decode(names) -> list[str]:
    return [n.decode('utf8') if isinstance(n, bytes) else str(n) for n in names]


def _read_legacy(root: h5py.Group) -> list[tuple[str, list[np.ndarray]]]:
    layers = []
    for layer in _decode(root.attrs['layer_names']):
        names = _decode(root[layer].attrs.get('weight_names', []))
        if names:
            layers.append((layer, [np.asarray(root[layer][n], np.float32) for n in names]))
    return layers


_KERAS3 = re.compile(r'(?:.*/)?layers/(conv2d|batch_normalization)(?:_(\d+))?/vars')


def _read_keras3(f: h5py.File, model: str) -> list[tuple[str, list[np.ndarray]]]:
    by_class: dict[str, list] = {'conv2d': [], 'batch_normalization': []}

    def visit(name, obj):
        m = _KERAS3.fullmatch(name)
        if m and isinstance(obj, h5py.Group) and len(obj):
            arrays = [np.asarray(obj[k], np.float32) for k in sorted(obj, key=int)]
            by_class[m.group(1)].append((int(m.group(2) or 0), name.rsplit('/vars', 1)[0], arrays))

    f.visititems(visit)
    for rows in by_class.values():
        rows.sort(key=lambda r: r[0])
    layers, taken = [], {'conv2d': 0, 'batch_normalization': 0}
    for _, roles, _ in expected(model):
        cls = 'conv2d' if 'kernel' in roles else 'batch_normalization'
        if taken[cls] < len(by_class[cls]):
            _, name, arrays = by_class[cls][taken[cls]]
            layers.append((name, arrays))
        taken[cls] += 1
    extra = sum(len(v) for v in by_class.values()) - len(layers)
    return layers + [('?', [])] * extra


def load_keras_app_h5(path: str | os.PathLike, model: str) -> dict:
    """Read a Keras ``model`` ('resnet50' or 'inception_v3') ``include_top=False`` weights file.

    Raises:
      WeightsError (one line naming the file and what was expected): missing, not HDF5, truncated,
        another model's file (a different number or shape of layers with weights).
    """
    path = os.fspath(path)
    if model not in MODULES:
        raise WeightsError(f'no Keras application loader for {model!r}; known: {", ".join(MODULES)}')
    if not os.path.isfile(path):
        raise WeightsError(f'{path}: no such file')
    if not h5py.is_hdf5(path):
        raise WeightsError(f'{path}: not an HDF5 file (expected {FILES[model]})')
    want = expected(model)
    try:
        with h5py.File(path, 'r') as f:
            root = f['model_weights'] if 'layer_names' not in f.attrs and 'model_weights' in f else f
            got = _read_legacy(root) if 'layer_names' in root.attrs else _read_keras3(f, model)
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise WeightsError(f'{path}: unreadable or truncated HDF5 file ({type(e).__name__}: {e}); '
                           f'expected {FILES[model]}') from None
    if len(got) != len(want):
        raise WeightsError(f'{path}: {len(got)} layers with weights, but Keras {model} (include_top=False) has '
                           f'{len(want)}: not a {model} notop file (expected {FILES[model]})')
    params = {}
    for i, ((name, arrays), (layer, roles, shapes)) in enumerate(zip(got, want)):
        if tuple(a.shape for a in arrays) != shapes:
            raise WeightsError(f'{path}: layer {i + 1} with weights ({name!r}) holds shapes '
                               f'{[a.shape for a in arrays]}, {model} needs {list(shapes)} for {layer}: '
                               f'not a {model} notop file (expected {FILES[model]})')
        params[layer] = dict(zip(roles, arrays))
    return params
