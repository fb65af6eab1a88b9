"""Activation maximization: the config and presets, per-filter keys and starts, the one pure step, the
chunked loop with dead-filter dropping, the engine, and diverse images of one filter."""
from jaxvis.visualize import schedule
from jaxvis.visualize.config import FilterConfig
from jaxvis.visualize.diverse import DiverseResult, visualize_diverse
from jaxvis.visualize.engine import (FilterResult, as_config, best_order, check_request, filters_of,
                                     parse_filters, visualize_filters)
from jaxvis.visualize.presets import PRESETS, pixel_recipe, preset
from jaxvis.visualize.schedule import can_drop_dead
from jaxvis.visualize.start import draw_filters, filter_keys, layer_id

__all__ = ['FilterConfig', 'PRESETS', 'preset', 'pixel_recipe', 'FilterResult', 'visualize_filters', 'best_order',
           'filters_of', 'check_request', 'parse_filters', 'as_config', 'DiverseResult', 'visualize_diverse',
           'can_drop_dead', 'draw_filters', 'filter_keys', 'layer_id', 'schedule']
