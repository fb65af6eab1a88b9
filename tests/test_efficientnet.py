"""EfficientNet-Lite: the torch-free ``.pth`` reader (both formats, hostile and broken files) and the
Flax module against the reference PyTorch implementation (numbers made by scripts/efficientnet_reference.py).

The real Lite0 check runs where the weights are already in jaxvis's cache (tests never download).
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxvis.edge.locations import WHEELS, search_paths
from jaxvis.errors import WeightsError
from jaxvis.models import efficientnet_model, load_efficientnet
from jaxvis.models.torch_pth import load_pth

DATA = Path(__file__).parent / 'data'
REF = np.load(DATA / 'tiny_efficientnet_reference.npz')


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_tiny_matches_reference_pytorch(fmt):
    model = efficientnet_model('tiny_efficientnet')
    params = load_efficientnet(DATA / f'tiny_efficientnet_{fmt}.pth', 'tiny_efficientnet')
    out = model.features(params, jnp.asarray(REF['x']))
    for i, layer in enumerate(['block1a', 'block2a', 'block2b', 'block3a']):
        np.testing.assert_allclose(np.asarray(out[layer]), REF[f'block{i}'], atol=2e-5, rtol=1e-5)
    assert out['logits'].shape == (1, 10) and out['avg_pool'].shape == (1, 160)
    np.testing.assert_allclose(np.asarray(out['logits']), REF['logits'], atol=2e-5, rtol=1e-5)


def test_both_formats_give_the_same_tensors():
    a, b = load_pth(DATA / 'tiny_efficientnet_zip.pth'), load_pth(DATA / 'tiny_efficientnet_legacy.pth')
    assert sorted(a) == sorted(b) and len(a) > 50
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k])
    assert a['_bn0.num_batches_tracked'].dtype == np.int64


class _Boom:
    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null',))


def _with_payload(src: Path, dst: Path) -> None:
    """The zip .pth with its data.pkl replaced by a pickle that would call os.system."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, 'w') as out:
        for n in z.namelist():
            out.writestr(n, pickle.dumps({'w': _Boom()}) if n.endswith('/data.pkl') else z.read(n))


def test_hostile_and_broken_files_get_one_line(tmp_path):
    bad = tmp_path / 'bad.pth'
    _with_payload(DATA / 'tiny_efficientnet_zip.pth', bad)
    with pytest.raises(WeightsError, match=r'refused: it asks for posix.system') as e:
        load_pth(bad)
    assert '\n' not in str(e.value)
    legacy = (DATA / 'tiny_efficientnet_legacy.pth').read_bytes()
    hostile = tmp_path / 'hostile_legacy.pth'  # the payload as the legacy file's first pickle
    hostile.write_bytes(pickle.dumps(_Boom()) + legacy)
    with pytest.raises(WeightsError, match='refused'):
        load_pth(hostile)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(legacy[:len(legacy) - 100])
    with pytest.raises(WeightsError, match='truncated or corrupt'):
        load_pth(cut)
    with pytest.raises(WeightsError, match='no such weights file'):
        load_pth(tmp_path / 'none.pth')
    with pytest.raises(WeightsError, match=r'expected float \[1000, 1280\]'):
        load_efficientnet(DATA / 'tiny_efficientnet_zip.pth', 'efficientnet_lite0')


def _real_weights() -> Path | None:
    name = WHEELS['efficientnet_lite0'].name
    for place in search_paths():
        if (place / name).is_file():
            return place / name
    return None


@pytest.mark.skipif(_real_weights() is None, reason='EfficientNet-Lite0 weights not in the cache '
                    '(`jaxvis weights --fetch --model efficientnet_lite0`)')
def test_real_photos_top1_and_reference_logits():
    ref = np.load(DATA / 'efficientnet_lite0_reference.npz')
    model = efficientnet_model('efficientnet_lite0')
    params = load_efficientnet(_real_weights())
    rgb = np.stack([np.asarray(Image.open(DATA / f'{n}_224.png').convert('RGB')) for n in ('chelsea', 'coffee')])
    logits = np.asarray(model.features(params, model.preprocess(jnp.asarray(rgb)), 'logits')['logits'])
    assert list(logits.argmax(1)) == [285, 967]
    assert np.abs(logits - ref['logits']).max() <= 1e-4 * np.abs(ref['logits']).max()
