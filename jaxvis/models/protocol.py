"""The model protocol: what jaxvis needs of a network, and the registry of built-in ones.

A :class:`Model` is a pure ``features(params, x, upto=None) -> {layer: activation}`` plus the model's
``preprocess`` / ``deprocess`` between RGB 0..255 and its input. Everything else (the layer names in
forward order, their channels and spatial sizes, the smallest input a layer needs, a layer's stride and
receptive field) is derived from ``features`` itself (:mod:`jaxvis.models.probe`). ``upto`` names the
deepest layer the caller needs; a model may stop there (VGG does) or compute on, since under ``jit``
XLA drops whatever does not reach an output. Activations are ``[N, H, W, C]``, or ``[N, C]`` for a
layer without spatial axes (pooled features, logits).

Optional hooks let a model do more, without the engine knowing what:

* ``params``: variables the model carries (:func:`jaxvis.models.from_flax`), used when none are passed;
* ``init(key) -> params``: random params of the right shapes (so layers can be listed without weights);
* ``kinds``: ``{layer: kind}`` ('conv', 'pool', ...): ``--layer all`` takes the 'conv' ones;
* ``specialize(size=, batch=, dtype=) -> Model``: a variant tuned for that input (VGG picks Winograd
  convolutions on CPU), with the same params and the same activations up to rounding;
* ``prepare(params) -> params``: the params in the form the model's ``features`` runs fastest on (a
  Winograd variant: its kernels transformed), computed once per job outside the step; ``features``
  takes the plain params as well;
* ``stem(size, upto) -> layer | None`` with ``resume(params, h, after, upto=None) -> {layer: activation}``:
  where the network may be cut for a CPU step that computes the layers up to ``layer`` one image per
  call (their working set then stays in cache, :mod:`jaxvis.visualize.staged`), and how to compute
  the layers after ``after`` from its activation ``h``. The staged step runs ``resume`` on a group of
  images as one batch: it must treat them independently (no batch statistics) and return every
  activation with the batch on axis 0;
* ``prune(params, upto) -> params``: the params that layers up to ``upto`` need (checked);
* ``load(path) -> params``: reads the model's weights file (default: a Keras ``.h5``, for VGG).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from jaxvis.errors import JaxvisError


def _identity(x):
    return x


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A network jaxvis can look into (hashable by identity: keep one object per model)."""

    name: str
    features: Callable[..., dict]
    preprocess: Callable = _identity
    deprocess: Callable = _identity
    params: Any = None
    init: Callable | None = None
    kinds: Mapping[str, str] | None = None
    specialize: Callable[..., 'Model'] | None = None
    prune: Callable[[Any, str], Any] | None = None
    prepare: Callable[[Any], Any] | None = None
    stem: Callable[[int, str], str | None] | None = None
    resume: Callable[..., dict] | None = None
    load: Callable[[str], Any] | None = None
    probe_size: int = 224
    cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def __repr__(self):
        return f'Model({self.name!r})'


_REGISTRY: dict[str, Callable[..., Model]] = {}
_HIDDEN: set[str] = set()


def register(name: str, factory: Callable[..., Model], *, hidden: bool = False) -> None:
    """Make ``factory(**options) -> Model`` available as ``get_model(name, **options)`` and to the CLI's
    ``--model``. ``hidden`` models (test models) work but are not listed."""
    _REGISTRY[name] = factory
    if hidden:
        _HIDDEN.add(name)


def get_model(model: str | Model = 'vgg16', **options) -> Model:
    """The registered model called ``model`` (a :class:`Model` passes through), built with ``options``
    (e.g. ``get_model('vgg16', conv='direct')``). The same name and options give the same object.

    Raises JaxvisError for an unknown name.
    """
    if isinstance(model, Model):
        if options:
            raise JaxvisError(f'options {sorted(options)} apply to a registered model name, not to {model!r}')
        return model
    try:
        factory = _REGISTRY[model]
    except (KeyError, TypeError):
        raise JaxvisError(f'unknown model {model!r}; known models: {", ".join(available_models())}') from None
    return factory(**options)


def available_models() -> list[str]:
    return sorted(n for n in _REGISTRY if n not in _HIDDEN)
