"""Synthetic ResNet50 / InceptionV3 weight files in the exact layouts Keras writes, from the layout
description ``tests/data/keras_apps_layout.json`` (made once from real Keras by
``scripts/keras_apps_reference.py``). numpy + h5py only: no TensorFlow.

The values are a pure function of (model, seed), so the reference activations that real Keras computed
on them (``tests/data/keras_apps_reference.npz``) can be checked here.
"""
from __future__ import annotations

import json
import os
import re

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
LAYOUT = os.path.join(HERE, 'data', 'keras_apps_layout.json')
REFERENCE = os.path.join(HERE, 'data', 'keras_apps_reference.npz')


def layout(model: str) -> dict:
    """``{'layers': [[name, class, [[weight_name, shape], ...]], ...], 'keras3': [group, ...]}``:
    every layer in Keras's ``model.layers`` order; ``keras3`` is the ``.weights.h5`` group of each
    weighted layer, in the same order."""
    with open(LAYOUT) as f:
        return json.load(f)[model]


def weighted(lay: dict) -> list:
    return [row for row in lay['layers'] if row[2]]


def synthetic(model: str, seed: int = 0) -> list[list[np.ndarray]]:
    """One list of float32 arrays per weighted layer (Keras order, each in its ``layer.weights`` order).

    Kernels ~ N(0, 1/fan_in), biases and betas and moving means ~ N(0, 0.1^2), gammas ~ U(0.8, 1.2),
    moving variances ~ U(0.5, 1.5): activations stay O(1) through the whole net.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _, _, weights in weighted(layout(model)):
        arrays = []
        for wname, shape in weights:
            role = wname.rsplit('/', 1)[-1].split(':')[0]
            if role == 'kernel':
                a = rng.standard_normal(shape, np.float32) / np.sqrt(np.prod(shape[:-1]))
            elif role == 'gamma':
                a = rng.uniform(0.8, 1.2, shape)
            elif role == 'moving_variance':
                a = rng.uniform(0.5, 1.5, shape)
            else:
                a = 0.1 * rng.standard_normal(shape, np.float32)
            arrays.append(np.asarray(a, np.float32))
        out.append(arrays)
    return out


def _renumber(name: str, offset: int) -> str:
    """'conv2d' -> 'conv2d_1', 'conv2d_4' -> 'conv2d_5' (offset 1: the official InceptionV3 file's names)."""
    if offset == 0:
        return name
    m = re.fullmatch(r'(conv2d|batch_normalization|activation|max_pooling2d|average_pooling2d|concatenate)(?:_(\d+))?',
                     name)
    if m is None:
        return name
    return f'{m.group(1)}_{int(m.group(2) or 0) + offset}'


def write_legacy(path, model: str, arrays: list, *, suffix: str = ':0', offset: int = 0,
                 model_weights: bool = False, drop: int = 0) -> str:
    """The legacy HDF5 layout: root (or ``model_weights``) attr ``layer_names`` (every layer), one group
    per layer with attr ``weight_names`` (``'conv1_conv/kernel:0'``: a subgroup and a dataset).

    ``suffix`` ':0' as the official / tf.keras files, '' as Keras 3; ``offset`` renumbers the
    auto-generated names as in the official InceptionV3 file; ``drop`` leaves out the last weighted layers
    (a truncated or foreign file)."""
    lay = layout(model)
    rows = lay['layers']
    keep = len(weighted(lay)) - drop
    with h5py.File(path, 'w') as f:
        root = f.create_group('model_weights') if model_weights else f
        names, i = [], 0
        for name, _, weights in rows:
            name = _renumber(name, offset)
            if weights and i >= keep:
                i += 1
                continue
            names.append(name)
            g = root.create_group(name)
            if not weights:
                g.attrs['weight_names'] = np.array([], dtype='S1')
                continue
            wnames = [f'{name}/{w.rsplit("/", 1)[-1].split(":")[0]}{suffix}' for w, _ in weights]
            g.attrs['weight_names'] = np.array([w.encode() for w in wnames])
            for w, a in zip(wnames, arrays[i]):
                g.create_dataset(w, data=a)
            i += 1
        root.attrs['layer_names'] = np.array([n.encode() for n in names])
        root.attrs['backend'] = b'tensorflow'
        root.attrs['keras_version'] = b'2.1.2' if suffix else b'3.15.1'
        if model_weights:
            f.attrs['model_config'] = b'{}'
    return os.fspath(path)


def write_keras3(path, model: str, arrays: list) -> str:
    """Keras 3 ``.weights.h5``: ``layers/<group>/vars/<i>`` for every layer (empty ``vars`` for layers
    without weights), and an empty top-level ``vars``."""
    lay = layout(model)
    with h5py.File(path, 'w') as f:
        f.create_group('vars')
        for group, layer_arrays in zip(lay['keras3'], arrays):
            g = f.create_group(f'layers/{group}/vars')
            for j, a in enumerate(layer_arrays):
                g.create_dataset(str(j), data=a)
        for k, name in enumerate(lay.get('keras3_empty', [])):
            f.create_group(f'layers/{name}/vars')
    return os.fspath(path)
