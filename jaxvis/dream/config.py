"""How a photo is dreamt: a frozen dataclass, and the objective made from layer weights."""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

from jaxvis import objectives as O
from jaxvis.errors import JaxvisError
from jaxvis.util import check_choice, check_float, check_int

DEFAULT_LAYERS = {'block4_conv3': 1.0}
OBJECTIVE_KINDS = ('mean_square', 'mean')
MAX_OCTAVES = 12
MAX_TILE = 8192
# keras.io's "Deep Dream" example (fchollet, examples/generative/deep_dream.py) on InceptionV3: its layer
# mix, 3 octaves at 1.4, 20 steps of 0.01 in [-1, 1] units, the loss on the activations less 2 pixels at
# each border. (Its `max_loss` early stop is not reproduced.) Values are DreamConfig.make's arguments.
PRESETS = {
    'keras-io': dict(layers={'mixed4': 1.0, 'mixed5': 1.5, 'mixed6': 2.0, 'mixed7': 2.5}, crop=2, octaves=3,
                     octave_scale=1.4, steps=20, step_size=0.01),
}


def layer_objective(layers: Mapping[str, float] | str | None = None, kind: str = 'mean_square',
                    *, crop: int = 0) -> O.Objective:
    """``sum(weight * deepdream(layer))`` (``kind='mean'``: :func:`jaxvis.objectives.layer_mean`) over
    ``{layer: weight}`` (one name: weight 1; None: :data:`DEFAULT_LAYERS`)."""
    check_choice('objective', kind, OBJECTIVE_KINDS)
    if layers is None:
        layers = DEFAULT_LAYERS
    if isinstance(layers, str):
        layers = {layers: 1.0}
    if not layers:
        raise JaxvisError('no layer given to dream on')
    make = O.deepdream if kind == 'mean_square' else O.layer_mean
    total = None
    for name, weight in layers.items():
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise JaxvisError(f'weight of layer {name!r} must be a number, got {weight!r}') from None
        if not math.isfinite(weight):
            raise JaxvisError(f'weight of layer {name!r} must be finite, got {weight}')
        term = make(name, crop=crop) if weight == 1.0 else weight * make(name, crop=crop)
        total = term if total is None else total + term
    return total


@dataclasses.dataclass(frozen=True)
class DreamConfig:
    """DeepDream's settings.

    objective: a weighted sum of layer terms (:func:`layer_objective`, :func:`jaxvis.objectives.deepdream`).
    octaves: number of scales; octave_scale: size ratio between them (>= 1).
    steps: gradient-ascent steps per octave; step_size: mean change of a pixel per step, in units of
      127.5 grey levels (keras.io's [-1, 1] scaling; 0.01 is 1.275 levels).
    tile_size: longest tile side in pixels (None: never tile); memory grows with its square.
    tile_margin: context pixels around each tile (:mod:`jaxvis.dream.tiles`); 0 is fastest.
    blur_sigma: Gaussian blur (pixels) of the image after every step; 0 turns it off. It compounds:
      40 steps at 0.5 px blur the photo like one 3 px blur and wash it out.
    """

    objective: O.Objective = dataclasses.field(default_factory=lambda: layer_objective())
    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 10
    step_size: float = 0.01
    tile_size: int | None = 512
    tile_margin: int = 0
    blur_sigma: float = 0.0
    name: str = 'custom'

    def __post_init__(self):
        if getattr(self.objective, 'terms', None) is None:
            raise JaxvisError('DeepDream needs an objective made of layer terms (objectives.deepdream, '
                              'objectives.layer_mean, and sums and multiples of them)')
        check_int('octaves', self.octaves, low=1, high=MAX_OCTAVES)
        check_float('octave scale', self.octave_scale, low=1.0, high=4.0)
        check_int('steps', self.steps, low=1)
        check_float('step size', self.step_size, low=0.0, high=10.0, low_open=True)
        if self.tile_size is not None:
            check_int('tile size', self.tile_size, low=1, high=MAX_TILE)
        check_int('tile margin', self.tile_margin, low=0, high=MAX_TILE)
        check_float('blur sigma', self.blur_sigma, low=0.0, high=64.0)

    @classmethod
    def make(cls, layers: Mapping[str, float] | str | None = None, objective: str = 'mean_square', *,
             crop: int = 0, **options) -> 'DreamConfig':
        """A config from ``{layer: weight}``, the objective's kind ('mean_square' or 'mean') and the
        activations left out at each border (``crop``)."""
        check_int('crop', crop, low=0)
        return cls(objective=layer_objective(layers, objective, crop=crop), **options)

    @classmethod
    def preset(cls, name: str, **overrides) -> 'DreamConfig':
        """A config of :data:`PRESETS` (``'keras-io'``), ``overrides`` (``make``'s arguments) winning."""
        check_choice('dream preset', name, tuple(PRESETS))
        return cls.make(**{**PRESETS[name], 'name': name, **overrides})

    @property
    def layers(self) -> dict[str, float]:
        """``{layer: weight}`` of the objective's terms (for manifests)."""
        return {t.layer: t.weight for t in self.objective.terms}

    def to_dict(self) -> dict:
        return {'preset': self.name, 'objective': repr(self.objective),
                'layers': self.layers, 'octaves': self.octaves, 'octave_scale': self.octave_scale,
                'steps': self.steps, 'step_size': self.step_size,
                'step_size_unit': '127.5 grey levels (mean |change| per step)', 'tile_size': self.tile_size,
                'tile_margin': self.tile_margin, 'blur_sigma': self.blur_sigma}
