"""jaxvis: see what the units of a neural network respond to (JAX/Flax).

Library functions are pure: they take params, arrays and explicit ``jax.random`` keys and return
arrays and measurements. Files, printing and progress bars live at the edge: :mod:`jaxvis.edge`,
:mod:`jaxvis.cli` and ``scripts/``.
"""
from jaxvis.errors import JaxvisError, WeightsError
from jaxvis import display, metrics, objectives, optim, param, regularizers, transforms
from jaxvis.models import Model, available_models, from_flax, from_fn, get_model, load_keras_h5, register
from jaxvis.visualize import (PRESETS, DiverseResult, FilterConfig, FilterResult, best_order, preset,
                              visualize_diverse, visualize_filters)
from jaxvis.dream import DreamConfig, DreamResult, deepdream, dream_sequence

__version__ = '0.1.0'

__all__ = ['JaxvisError', 'WeightsError', 'Model', 'from_flax', 'from_fn', 'available_models', 'get_model', 'load_keras_h5', 'register',
           'display', 'metrics', 'objectives', 'optim', 'param', 'regularizers', 'transforms',
           'FilterConfig', 'PRESETS', 'preset', 'FilterResult', 'best_order', 'visualize_filters',
           'DiverseResult', 'visualize_diverse', 'DreamConfig', 'DreamResult', 'deepdream', 'dream_sequence']
