"""The Keras applications beyond VGG as :class:`~jaxvis.models.Model`s: ``resnet50`` (caffe
preprocessing, as ``keras.applications.resnet50.preprocess_input``) and ``inception_v3`` ('tf'
preprocessing, in [-1, 1]). Their weights are the official Keras notop files
(:func:`jaxvis.models.keras_apps_h5.load_keras_app_h5`); there is no fallback.
"""
from __future__ import annotations

import functools

from jaxvis.models import inception, keras_apps_h5, resnet
from jaxvis.models.preprocessing import MODES
from jaxvis.models.protocol import Model

_SPEC = {
    'resnet50': (resnet.ResNet50, 'caffe', dict(resnet.layer_table())),
    'inception_v3': (inception.InceptionV3, 'tf', {name: 'conv' for name in inception.NAMES}),
}


def _features(module):
    def features(params, x, upto=None):
        return module(last_layer=upto).apply({'params': params}, x)
    return features


@functools.cache
def keras_app_model(name: str) -> Model:
    """The :class:`~jaxvis.models.Model` of Keras's ``name`` ('resnet50' or 'inception_v3'),
    ``include_top=False``, BatchNorm in inference mode. ``kinds``: 'conv' for the layers ``--layer all``
    takes (ResNet50's block outputs, InceptionV3's mixed blocks)."""
    module, mode, kinds = _SPEC[name]
    pre, de = MODES[mode]
    return Model(name, _features(module), pre, de, init=functools.partial(keras_apps_h5.init, name),
                 kinds=kinds)
