"""The filter axis split over devices gives the single-device images (4 forced CPU devices, in a subprocess).

XLA:CPU convolutions are not bitwise batch-invariant (about 1 ulp, depending on the batch shape), so a
sharded run, whose devices each see a smaller batch, is compared with a tolerance: after 4 steps of
RMS-normalized ascent (step 1 per pixel in model-input units, pixels ~0..255) the images agree to
``ATOL`` and the objectives to ``RTOL``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxvis.backend import sharding
from jaxvis.errors import JaxvisError

ATOL = 1e-3   # pixels, RGB 0..255
RTOL = 1e-4   # objectives

_CHILD = textwrap.dedent('''
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import random_params
    from jaxvis.visualize import preset, visualize_filters
    from jaxvis.models.vgg import TINY_BLOCKS
    assert jax.device_count() == 4, jax.devices()
    from jaxvis.backend.sharding import filter_mesh
    assert filter_mesh(None).size == 4  # the default: every local device
    params = random_params(TINY_BLOCKS, seed=3)
    kw = dict(model='tiny', size=32, key=jax.random.key(7))
    out = {{}}
    for name, filters, bs, devices in (('one', range(8), 8, [jax.devices()[0]]), ('all', range(8), 8, 'all'),
                                       ('odd', [1, 3, 6, 7, 2], 5, 'all'),
                                       ('odd_one', [1, 3, 6, 7, 2], 5, jax.devices()[:1]),
                                       ('two', range(8), 3, jax.devices()[2:])):
        r = visualize_filters(params, 'block3_conv2', filters, preset('seed', steps=4), batch_size=bs, devices=devices,
                              **kw)
        out[name] = dict(images=r.images.tolist(), losses=r.losses.tolist(), history=r.history.tolist())
    import own_model  # a model of one's own (tests/own_model.py) shards the same way
    m = own_model.make()
    for name, devices in (('own_all', 'all'), ('own_one', jax.devices()[:1])):
        r = visualize_filters(None, 'Residual_1/act', range(8), preset('lucid', steps=3), model=m, devices=devices,
                              size=32, key=jax.random.key(7))
        out[name] = dict(images=r.images.tolist(), losses=r.losses.tolist(), history=r.history.tolist())
    print(json.dumps(out))
''')


@pytest.fixture(scope='module')
def runs():
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4', JAX_PLATFORMS='cpu')
    code = _CHILD.format(tests=os.path.dirname(__file__))
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {k: {a: np.asarray(v, np.float32) for a, v in d.items()} for k, d in json.loads(proc.stdout).items()}


def _close(a, b):
    np.testing.assert_allclose(a['images'], b['images'], rtol=0, atol=ATOL)
    np.testing.assert_allclose(a['losses'], b['losses'], rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(a['history'], b['history'], rtol=RTOL, atol=1e-6)


def test_four_devices_equal_one(runs):
    assert runs['one']['images'].shape == (8, 32, 32, 3)
    _close(runs['all'], runs['one'])


def test_batch_padded_to_device_count(runs):
    assert runs['odd']['images'].shape == (5, 32, 32, 3)
    _close(runs['odd'], runs['odd_one'])
    # the same filters inside the 8-filter run: filter i's image depends only on (key, layer, i)
    pos = [1, 3, 6, 7, 2]
    _close({k: v[pos] if k != 'history' else v[:, pos] for k, v in runs['one'].items()}, runs['odd'])


def test_device_subset_and_several_chunks(runs):
    # 2 devices, batch 3 -> 4, two chunks (the second one padded)
    _close(runs['two'], runs['one'])


def test_own_model_four_devices_equal_one(runs):
    _close(runs['own_all'], runs['own_one'])


def test_helpers_single_device():
    assert sharding.filter_mesh([jax.devices()[0]]) is None
    assert sharding.padded_size(5, None) == 5
    x = np.zeros((3, 2))
    assert sharding.shard(x, None) is x and sharding.replicate(x, None) is x


def test_helpers_reject_bad_devices():
    with pytest.raises(JaxvisError):
        sharding.resolve_devices([])
    with pytest.raises(JaxvisError):
        sharding.resolve_devices('gpu')
    with pytest.raises(JaxvisError):
        sharding.resolve_devices([jax.devices()[0]] * 2)
