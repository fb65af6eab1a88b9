"""jaxvis: see what the filters of a convolutional network respond to (JAX/Flax).

Library functions are pure: they take params, arrays and explicit ``jax.random`` keys and return
arrays and measurements. Files, printing and progress bars live in :mod:`jaxvis.cli` and ``scripts/``.
"""
from jaxvis.errors import JaxvisError, WeightsError
from jaxvis.models import (ModelSpec, available_models, deprocess, get_model, load_keras_h5, preprocess,
                           register)
from jaxvis import display, metrics, objectives, param, regularizers, transforms
from jaxvis.config import FilterConfig, PRESETS, preset
from jaxvis.filters import FilterResult, best_order, visualize_filters
from jaxvis.render import DiverseResult, visualize_diverse
from jaxvis.dream import DreamResult, deepdream, dream_sequence

__version__ = '0.1.0'

__all__ = ['JaxvisError', 'WeightsError', 'ModelSpec', 'available_models', 'deprocess', 'get_model',
           'load_keras_h5', 'preprocess', 'register', 'display', 'objectives', 'regularizers', 'transforms',
           'FilterConfig', 'PRESETS', 'preset', 'FilterResult', 'best_order', 'visualize_filters',
           'DreamResult', 'deepdream', 'dream_sequence', 'metrics', 'param', 'DiverseResult', 'visualize_diverse']
