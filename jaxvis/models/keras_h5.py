"""Read VGG16/VGG19 conv weights from Keras HDF5 files into a Flax params pytree (pure, no download).

Three layouts are understood:

1. the official notop files (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``): root attr
   ``layer_names``, one group per layer with attr ``weight_names``, datasets ``block1_conv1_W_1:0``;
2. Keras' legacy HDF5 writer (tf.keras 2 ``save_weights('x.h5')``, Keras 3 legacy): the same attrs,
   dataset paths taken from ``weight_names`` (``block1_conv1/kernel:0``), possibly under ``model_weights``;
3. Keras 3 ``.weights.h5``: ``.../layers/conv2d{,_1,...}/vars/{0,1}``, convs taken in numeric path order.

Kernels are HWIO ``[3, 3, C_in, C_out]`` float32, biases ``[C_out]``. Fully connected layers are ignored.
"""
from __future__ import annotations

import os
import re
from typing import Sequence

import h5py
import numpy as np

from jaxvis.errors import WeightsError
from jaxvis.models.keras_apps_h5 import MODULES as APPS
from jaxvis.models.keras_apps_h5 import load_keras_app_h5
from jaxvis.models.vgg import TINY_BLOCKS, VGG16_BLOCKS, VGG19_BLOCKS, layer_table

Params = dict[str, dict[str, np.ndarray]]


def conv_names(blocks: Sequence[tuple[int, int]]) -> list[str]:
    return [name for name, kind, _, _ in layer_table(blocks) if kind == 'conv']


def expected_shapes(blocks: Sequence[tuple[int, int]]) -> dict[str, tuple[int, ...]]:
    """``{conv_name: (3, 3, C_in, C_out)}`` for a VGG of the given blocks."""
    shapes, c_in = {}, 3
    for name, kind, width, _ in layer_table(blocks):
        if kind == 'conv':
            shapes[name] = (3, 3, c_in, width)
            c_in = width
    return shapes


KNOWN = {'vgg16': VGG16_BLOCKS, 'vgg19': VGG19_BLOCKS, 'tiny': TINY_BLOCKS}  # tiny: the test model


def _decode(names) -> list[str]:
    return [n.decode('utf8') if isinstance(n, bytes) else str(n) for n in names]


def _natural_key(path: str):
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', path)]


def _split_kernel_bias(arrays: list[np.ndarray], where: str, path: str):
    kernels = [a for a in arrays if a.ndim == 4]
    biases = [a for a in arrays if a.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
        raise WeightsError(f'{path}: layer {where} does not hold one 4-D kernel and one bias '
                           f'(shapes {[a.shape for a in arrays]})')
    return kernels[0], biases[0]


def _read_legacy(root: h5py.Group, path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Layouts 1 and 2: layer groups named in ``layer_names``, datasets named in ``weight_names``."""
    found = {}
    for layer in _decode(root.attrs['layer_names']):
        if layer not in root:
            raise WeightsError(f'{path}: layer {layer!r} is listed in layer_names but has no group')
        group = root[layer]
        names = _decode(group.attrs.get('weight_names', []))
        if not names:
            continue
        try:
            arrays = [np.asarray(group[n], dtype=np.float32) for n in names]
        except KeyError as e:
            raise WeightsError(f'{path}: layer {layer!r} lacks a weight it names: {e}') from None
        if any(a.ndim == 4 for a in arrays):
            found[layer] = _split_kernel_bias(arrays, repr(layer), path)
    return found


def _read_keras3(f: h5py.File, path: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Layout 3: every ``.../vars`` group with a 3x3 kernel and a bias, in numeric path order."""
    groups = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and name.split('/')[-1] == 'vars':
            groups.append(name)

    f.visititems(visit)
    convs = []
    for name in sorted(groups, key=_natural_key):
        g = f[name]
        keys = sorted(g.keys(), key=_natural_key)
        arrays = [np.asarray(g[k], dtype=np.float32) for k in keys]
        if len(arrays) == 2 and arrays[0].ndim == 4 and arrays[0].shape[:2] == (3, 3):
            kernel, bias = _split_kernel_bias(arrays, repr(name), path)
            convs.append((name.rsplit('/vars', 1)[0], kernel, bias))
    return convs


def _infer_model(by_name: dict, path: str) -> str:
    if not by_name:
        raise WeightsError(f'{path}: no convolution weights found (is this a VGG16/VGG19 Keras weights file?)')
    return 'vgg19' if 'block3_conv4' in by_name else 'vgg16'


def load_keras_h5(path: str | os.PathLike, model: str | None = None) -> Params:
    """Read a Keras VGG16/VGG19 weights file into ``{'block1_conv1': {'kernel', 'bias'}, ...}``.

    Args:
      path: an ``.h5`` in any of the three layouts of this module's docstring.
      model: 'vgg16' or 'vgg19' to insist on one ('tiny': the test model); None infers it from the layers.
        'resnet50' and 'inception_v3' are read by :func:`jaxvis.models.keras_apps_h5.load_keras_app_h5`.

    Returns:
      params: numpy float32, kernel ``[3, 3, C_in, C_out]`` (HWIO), bias ``[C_out]``, conv layers only.

    Raises:
      WeightsError: the file is missing, not HDF5, truncated, lacks a layer, or has a wrong shape.
    """
    path = os.fspath(path)
    if model in APPS:
        return load_keras_app_h5(path, model)
    if model is not None and model not in KNOWN:
        raise WeightsError(f'unknown model {model!r}; known: {", ".join(KNOWN)}')
    if not os.path.isfile(path):
        raise WeightsError(f'{path}: no such file')
    if not h5py.is_hdf5(path):
        raise WeightsError(f'{path}: not an HDF5 file')
    try:
        with h5py.File(path, 'r') as f:
            root = f['model_weights'] if 'layer_names' not in f.attrs and 'model_weights' in f else f
            if 'layer_names' in root.attrs:
                by_name = _read_legacy(root, path)
            else:
                convs = _read_keras3(f, path)
                n16, n19 = len(conv_names(VGG16_BLOCKS)), len(conv_names(VGG19_BLOCKS))
                want = len(conv_names(KNOWN[model])) if model else (
                    n16 if len(convs) == n16 else n19 if len(convs) == n19 else None)
                if want is None or len(convs) != want:
                    raise WeightsError(f'{path}: found {len(convs)} 3x3 convolutions in a Keras 3 file, '
                                       f'expected {n16} (VGG16) or {n19} (VGG19)')
                model = model or ('vgg16' if want == n16 else 'vgg19')
                by_name = {name: (k, b) for name, (_, k, b) in zip(conv_names(KNOWN[model]), convs)}
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise WeightsError(f'{path}: unreadable or truncated HDF5 file ({type(e).__name__}: {e})') from None
    inferred = _infer_model(by_name, path)
    if model is not None and model != inferred and model != 'tiny':
        raise WeightsError(f'{path}: these are {inferred} weights, not {model}')
    model = model or inferred
    params: Params = {}
    for name, shape in expected_shapes(KNOWN[model]).items():
        if name not in by_name:
            raise WeightsError(f'{path}: layer {name!r} missing for {model}')
        kernel, bias = by_name[name]
        if kernel.shape != shape or bias.shape != (shape[-1],):
            raise WeightsError(f'{path}: layer {name!r} has kernel {kernel.shape} and bias {bias.shape}, '
                               f'{model} needs {shape} and ({shape[-1]},)')
        params[name] = {'kernel': kernel, 'bias': bias}
    return params


def save_keras_notop_h5(params: Params, path: str | os.PathLike) -> None:
    """Write params in the official Keras notop layout (layout 1), pool layers included.

    Used to convert other files (e.g. HED's Keras 3 weights) once into the layout Keras ships.
    """
    names = list(params)
    n_blocks = max(int(n[5]) for n in names)
    layer_names = ['input_1']
    for b in range(1, n_blocks + 1):
        layer_names += [n for n in names if n.startswith(f'block{b}_')] + [f'block{b}_pool']
    with h5py.File(path, 'w') as f:
        f.attrs['layer_names'] = np.array([n.encode() for n in layer_names])
        f.attrs['backend'] = b'tensorflow'
        f.attrs['keras_version'] = b'2.2.4'
        for layer in layer_names:
            g = f.create_group(layer)
            if layer in params:
                wn = [f'{layer}_W_1:0', f'{layer}_b_1:0']
                g.attrs['weight_names'] = np.array([n.encode() for n in wn])
                g.create_dataset(wn[0], data=np.asarray(params[layer]['kernel'], np.float32))
                g.create_dataset(wn[1], data=np.asarray(params[layer]['bias'], np.float32))
            else:
                g.attrs['weight_names'] = np.array([], dtype='S1')
