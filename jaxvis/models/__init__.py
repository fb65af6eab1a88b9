"""Models jaxvis can look into. VGG16 is the default; others plug in through :func:`register`.

A :class:`ModelSpec` says how to build a Flax module that stops at a given layer, which layers
exist (name, kind, channels, total stride) and how images map to and from the model's input space.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn

from jaxvis.errors import JaxvisError
from jaxvis.models.keras_h5 import load_keras_h5, save_keras_notop_h5
from jaxvis.models.vgg import (TINY_BLOCKS, VGG, VGG16, VGG16_BLOCKS, VGG19, VGG19_BLOCKS, TinyVGG,
                               deprocess, layer_table, preprocess)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What jaxvis needs to know of a model.

    Attributes:
      name: registry key, e.g. 'vgg16'.
      make: ``last_layer -> flax Module`` whose ``apply({'params': p}, x)`` returns ``{layer: [N,H,W,C]}``.
      layers: ``((name, kind, channels, stride), ...)`` in forward order.
      preprocess: RGB 0..255 ``[..., 3]`` -> model input.  deprocess: its exact inverse.
      tunable: ``make(last_layer, conv=plan)`` accepts a :func:`jaxvis.tuning.conv_plan` (every conv 3x3
        'SAME' stride 1, every pool 2x2), so its convolutions may run as Winograd on CPU.
    """

    name: str
    make: Callable[[str | None], nn.Module]
    layers: tuple[tuple[str, str, int, int], ...]
    preprocess: Callable = preprocess
    deprocess: Callable = deprocess
    tunable: bool = False

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(row[0] for row in self.layers)

    @property
    def conv_layers(self) -> tuple[str, ...]:
        return tuple(row[0] for row in self.layers if row[1] == 'conv')

    def layer(self, name: str) -> tuple[str, str, int, int]:
        """The layer's row; raises JaxvisError naming the valid layers if unknown."""
        for row in self.layers:
            if row[0] == name:
                return row
        raise JaxvisError(f'unknown layer {name!r} for {self.name}; valid layers: {", ".join(self.layer_names)}')

    def channels(self, name: str) -> int:
        return self.layer(name)[2]

    def output_size(self, name: str, size: int) -> int:
        """Spatial output size of ``name`` for a ``size`` x ``size`` input (Keras floors at each pool)."""
        out = size
        for row_name, kind, _, _ in self.layers:
            if kind == 'pool':
                out //= 2
            if row_name == name:
                return out
        raise self.layer(name)  # pragma: no cover - layer() raises first

    def check_size(self, name: str, size: int) -> None:
        """Raise JaxvisError if a ``size`` input leaves ``name`` with no spatial extent."""
        if self.output_size(name, size) < 1:
            need = self.layer(name)[3]
            raise JaxvisError(f'size {size} is too small for {name}: it needs an input of at least {need} pixels')


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Make ``spec`` available by name to :func:`get_model` and the CLI's ``--model``."""
    _REGISTRY[spec.name] = spec
    return spec


def get_model(name: str | ModelSpec) -> ModelSpec:
    """The registered :class:`ModelSpec` called ``name`` (a spec passes through)."""
    if isinstance(name, ModelSpec):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise JaxvisError(f'unknown model {name!r}; known models: {", ".join(sorted(_REGISTRY))}') from None


def available_models() -> list[str]:
    return sorted(_REGISTRY)


register(ModelSpec('vgg16', VGG16, layer_table(VGG16_BLOCKS), tunable=True))
register(ModelSpec('vgg19', VGG19, layer_table(VGG19_BLOCKS), tunable=True))
register(ModelSpec('tiny', TinyVGG, layer_table(TINY_BLOCKS), tunable=True))

__all__ = ['ModelSpec', 'register', 'get_model', 'available_models', 'VGG', 'VGG16', 'VGG19', 'TinyVGG',
           'preprocess', 'deprocess', 'layer_table', 'load_keras_h5', 'save_keras_notop_h5']
