"""DeepDream: the config, octaves, tiles, and the ascent over a photo or a zooming sequence."""
from jaxvis.dream.ascent import DreamResult, check_dream, check_sequence, deepdream, dream_sequence
from jaxvis.dream.config import DEFAULT_LAYERS, PRESETS, DreamConfig, layer_objective
from jaxvis.dream.octaves import octave_shapes, plan_octaves

__all__ = ['DreamConfig', 'DreamResult', 'deepdream', 'dream_sequence', 'layer_objective', 'check_dream',
           'check_sequence', 'plan_octaves', 'octave_shapes', 'DEFAULT_LAYERS', 'PRESETS']
