#!/usr/bin/env python3
"""Derive, once, from real Keras what the ResNet50 / InceptionV3 tests need; run in a scratch venv with
tensorflow-cpu and keras 3 (never a jaxvis dependency):

    /path/to/venv-tf/bin/python scripts/keras_apps_reference.py

Writes
* ``jaxvis/models/keras_order.py``: the layers with weights, in Keras's ``model.layers`` order (legacy
  ``.h5`` files are loaded by this order, as Keras does);
* ``tests/data/keras_apps_layout.json``: every layer (name, class, weight names and shapes) and the Keras 3
  ``.weights.h5`` group of each weighted layer, found by saving a model with distinct weights;
* ``tests/data/keras_apps_reference.npz``: Keras's own activations on the synthetic weights of
  ``tests/keras_apps_files.synthetic`` for one reduced-size random image (the spatial mean of every channel,
  and the full map of the first 4 channels, of each checked layer).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))

import h5py
import keras
import keras_apps_files as kf
import numpy as np

SIZES = {'resnet50': 75, 'inception_v3': 107}  # odd sides: padding and floors are tested
SEED = 0


def checked_layers(model: str, net) -> list[str]:
    names = [layer.name for layer in net.layers]
    if model == 'resnet50':
        return ['conv1_conv', 'conv1_relu', 'pool1_pool', 'conv2_block1_1_relu', 'conv2_block1_2_relu'] + \
               [n for n in names if n.endswith('_out')]
    return [f'mixed{i}' for i in range(11)]


def build(model: str):
    keras.backend.clear_session()  # fresh auto-generated names: conv2d, conv2d_1, ...
    fn = {'resnet50': keras.applications.ResNet50, 'inception_v3': keras.applications.InceptionV3}[model]
    return fn(weights=None, include_top=False)


def describe(net) -> dict:
    rows = [[layer.name, type(layer).__name__, [[w.path, list(w.shape)] for w in layer.weights]]
            for layer in net.layers]
    return {'layers': rows}


def keras3_groups(net, model) -> tuple[list[str], list[str]]:
    """Save ``net`` with distinct weights; the ``.weights.h5`` group holding each weighted layer's arrays."""
    layers = [layer for layer in net.layers if layer.weights]
    for k, layer in enumerate(layers):
        layer.set_weights([np.full(w.shape, k + 0.25 * j, np.float32) for j, w in enumerate(layer.weights)])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'm.weights.h5')
        net.save_weights(path)
        with h5py.File(path, 'r') as f:
            by_value, empty = {}, []
            for name in f['layers']:
                vars_ = f['layers'][name]['vars']
                if len(vars_):
                    by_value[float(np.asarray(vars_['0']).flat[0])] = name
                else:
                    empty.append(name)
    return [by_value[float(k)] for k in range(len(layers))], empty


def main() -> None:
    layouts, order, ref = {}, {}, {}
    for model in SIZES:
        net = build(model)
        lay = describe(net)
        lay['keras3'], lay['keras3_empty'] = keras3_groups(net, model)
        layouts[model] = lay
        order[model] = [row[0] for row in lay['layers'] if row[2]]
    with open(kf.LAYOUT, 'w') as f:
        json.dump(layouts, f, separators=(',', ':'))
    for model, size in SIZES.items():
        net = build(model)
        for layer, arrays in zip([la for la in net.layers if la.weights], kf.synthetic(model, SEED)):
            layer.set_weights(arrays)
        rgb = np.random.default_rng(SEED + 1).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
        pre = {'resnet50': keras.applications.resnet50.preprocess_input,
               'inception_v3': keras.applications.inception_v3.preprocess_input}[model]
        names = checked_layers(model, net)
        sub = keras.Model(net.input, [net.get_layer(n).output for n in names])
        outs = sub.predict(pre(rgb.copy()), verbose=0)
        ref[f'{model}/rgb'] = rgb
        for n, a in zip(names, outs):
            ref[f'{model}/{n}/mean'] = a.mean(axis=(0, 1, 2)).astype(np.float32)
            ref[f'{model}/{n}/map'] = a[0, :, :, :4].astype(np.float32)
    np.savez_compressed(kf.REFERENCE, **ref)
    lines = ['"""The layers with weights of Keras\'s ResNet50 / InceptionV3, in ``model.layers`` order: the order in',
             'which Keras loads a legacy .h5 file. Written by scripts/keras_apps_reference.py from keras',
             f'{keras.__version__}; do not edit."""', '']
    for model, names in order.items():
        lines.append(f'{model.upper()} = tuple("""')
        for i in range(0, len(names), 6):
            lines.append(' '.join(names[i:i + 6]))
        lines.append('""".split())')
        lines.append('')
    with open(os.path.join(ROOT, 'jaxvis', 'models', 'keras_order.py'), 'w') as f:
        f.write('\n'.join(lines))
    print('keras', keras.__version__, {m: len(o) for m, o in order.items()})


if __name__ == '__main__':
    main()
