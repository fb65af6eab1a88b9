"""Models jaxvis can look into: the protocol, the registry, VGG16 (the default) and its Keras loader,
Keras's ResNet50 and InceptionV3 and theirs, EfficientNet-Lite0 (an ImageNet classifier with its head)
and its PyTorch state-dict reader.

``get_model('vgg16')`` is the default; ``get_model('vgg16', conv='direct')`` a variant. Any other
network is a :class:`Model` (see :mod:`jaxvis.models.protocol`): your own Flax module through
:func:`from_flax`, any function of (params, x) through :func:`from_fn`, a name through :func:`register`.
"""
from __future__ import annotations

import functools

from jaxvis.models import preprocessing, probe
from jaxvis.models.adapters import from_flax, from_fn
from jaxvis.models.efficientnet import EfficientNetLite
from jaxvis.models.efficientnet_model import efficientnet_model, load_efficientnet
from jaxvis.models.forward import forward, params_up_to
from jaxvis.models.keras_apps import keras_app_model
from jaxvis.models.keras_apps_h5 import load_keras_app_h5
from jaxvis.models.keras_h5 import load_keras_h5, save_keras_notop_h5
from jaxvis.models.protocol import Model, available_models, get_model, register
from jaxvis.models.vgg import (TINY_BLOCKS, VGG, VGG16, VGG16_BLOCKS, VGG19, VGG19_BLOCKS, TinyVGG,
                               deprocess, layer_table, preprocess, vgg_model)

register('vgg16', functools.partial(vgg_model, 'vgg16'))
register('vgg19', functools.partial(vgg_model, 'vgg19'))
register('resnet50', functools.partial(keras_app_model, 'resnet50'))
register('inception_v3', functools.partial(keras_app_model, 'inception_v3'))
register('tiny', functools.partial(vgg_model, 'tiny'), hidden=True)
register('efficientnet_lite0', functools.partial(efficientnet_model, 'efficientnet_lite0'))
register('tiny_efficientnet', functools.partial(efficientnet_model, 'tiny_efficientnet'), hidden=True)

__all__ = ['Model', 'from_flax', 'from_fn', 'preprocessing', 'register', 'get_model', 'available_models', 'forward', 'params_up_to', 'probe',
           'vgg_model', 'keras_app_model', 'load_keras_app_h5', 'VGG', 'VGG16', 'VGG19', 'TinyVGG', 'preprocess', 'deprocess', 'layer_table',
           'load_keras_h5', 'save_keras_notop_h5', 'VGG16_BLOCKS', 'VGG19_BLOCKS', 'TINY_BLOCKS',
           'EfficientNetLite', 'efficientnet_model', 'load_efficientnet']
