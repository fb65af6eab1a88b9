"""A filter's image is the same bytes whatever the batch, the filters asked with it and the device count
(4 forced CPU devices, in a subprocess).

XLA:CPU's convolutions and matmuls round by the batch *shape* (Eigen picks its blocking from it): a
filter computed in a call of 2 and in a call of 8 used to differ by the last bit after one step and by
up to 28 grey levels after 20 (issue 13). The engine now runs every operation on groups of
``engine.WIDTH`` images per device, padding a short chunk, so the bytes must match exactly. The forced
Winograd model makes the convolutions matmuls over batch x tiles rows, where the rounding showed most
(F2: the same tile code as F4, at a fifth of the compile, 4 s against 23 for the tiny model).
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

_CHILD = textwrap.dedent('''
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import random_params
    from jaxvis.models import get_model
    from jaxvis.visualize import preset, visualize_filters
    from jaxvis.models.vgg import TINY_BLOCKS
    assert jax.device_count() == 4, jax.devices()
    from jaxvis.backend.sharding import filter_mesh
    assert filter_mesh(None).size == 4  # the default: every local device
    params = random_params(TINY_BLOCKS, seed=3)
    one = [jax.devices()[0]]
    out = {{}}
    from jaxvis.backend import onednn
    for conv in ('direct', 'winograd2') + (('onednn',) if onednn.available() else ()):
        kw = dict(model=get_model('tiny', conv=conv), size=32, key=jax.random.key(7))
        for name, filters, bs, devices in (('one', range(8), None, one), ('all', range(8), None, 'all'),
                                           ('alone', [5], None, one), ('pair', [5, 2], None, one),
                                           ('bs2', range(8), 2, one), ('bs16', [*range(8), 0, 1, 2, 3], 16, one)):
            if conv == 'winograd2' and name in ('all', 'bs16') or conv == 'onednn' and name == 'bs16':
                continue  # the same two shapes as direct's (the suite's time): Winograd is checked at width 8
            r = visualize_filters(params, 'block3_conv2', filters, preset('seed', steps=4), batch_size=bs,
                                  devices=devices, **kw)
            out[conv + '_' + name] = dict(images=r.images.tolist(), losses=r.losses.tolist(),
                                          history=r.history.tolist())
    kw = dict(model=get_model('tiny', conv='direct'), size=32, key=jax.random.key(7), width=4)
    for name, filters, bs, devices in (('one', range(8), None, one), ('all', range(8), None, 'all'),
                                       ('alone', [5], None, one), ('bs8', range(8), 8, one)):
        r = visualize_filters(params, 'block3_conv2', filters, preset('seed', steps=4), batch_size=bs,
                              devices=devices, **kw)
        out['w4_' + name] = dict(images=r.images.tolist(), losses=r.losses.tolist(), history=r.history.tolist())
    import own_model  # a model of one's own (tests/own_model.py) shards the same way
    m = own_model.make()
    # width 4 (the suite's time: width 8's programs compile a third longer): 8 filters are two groups of 4 on
    # one device, a padded group on each of 4 devices (and lucid's rescue, here of filter 6, on both)
    for name, devices in (('own_all', 'all'), ('own_one', one)):
        r = visualize_filters(None, 'Residual_1/act', range(8), preset('lucid', steps=3), model=m, devices=devices,
                              size=32, key=jax.random.key(7), width=4)
        out[name] = dict(images=r.images.tolist(), losses=r.losses.tolist(), history=r.history.tolist())
    print(json.dumps(out))
''')


@pytest.fixture(scope='module')
def runs():
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4', JAX_PLATFORMS='cpu')
    code = _CHILD.format(tests=os.path.dirname(__file__))
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {k: {a: np.asarray(v, np.float32) for a, v in d.items()} for k, d in json.loads(proc.stdout).items()}


def _same(a, b, pos=None):
    """The same bytes: images, final objectives and every step's objective (of filters ``pos`` of ``a``)."""
    if pos is not None:
        a = {k: v[:, pos] if k == 'history' else v[pos] for k, v in a.items()}
    for k in ('images', 'losses', 'history'):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _convs():
    from jaxvis.backend import onednn
    return ('direct', 'winograd2') + (('onednn',) if onednn.available() else ())


CONVS = _convs()


def test_four_devices_equal_one(runs):
    assert runs['direct_one']['images'].shape == (8, 32, 32, 3)
    _same(runs['direct_all'], runs['direct_one'])


@pytest.mark.parametrize('conv', CONVS)
def test_a_filter_alone_in_a_pair_or_in_eight(runs, conv):
    _same(runs[f'{conv}_one'], runs[f'{conv}_alone'], [5])
    _same(runs[f'{conv}_one'], runs[f'{conv}_pair'], [5, 2])


@pytest.mark.parametrize('conv', CONVS)
def test_batch_size_does_not_change_the_bytes(runs, conv):
    _same(runs[f'{conv}_bs2'], runs[f'{conv}_one'])
    if conv == 'direct':
        _same(runs['direct_bs16'], runs['direct_one'], list(range(8)))  # two groups of 8 in one call (12 + 4 padding)


def test_another_width_is_batch_independent_too(runs):
    """``width=4``: two calls of 4, one call of two groups of 4, alone (padded to 4) and on 4 devices
    (16 slots) give the same bytes as each other."""
    _same(runs['w4_bs8'], runs['w4_one'])
    _same(runs['w4_all'], runs['w4_one'])
    _same(runs['w4_one'], runs['w4_alone'], [5])


def test_onednn_four_devices_equal_one(runs):
    """oneDNN's convolutions (host calls from the 4 devices' programs at once) give one device's bytes."""
    from jaxvis.backend import onednn
    if not onednn.available():
        pytest.skip('oneDNN did not load')
    _same(runs['onednn_all'], runs['onednn_one'])


def test_own_model_four_devices_equal_one(runs):
    _same(runs['own_all'], runs['own_one'])


def test_helpers_single_device():
    assert sharding.filter_mesh([jax.devices()[0]]) is None
    x = np.zeros((3, 2))
    assert sharding.shard(x, None) is x and sharding.replicate(x, None) is x


def test_helpers_reject_bad_devices():
    with pytest.raises(JaxvisError):
        sharding.resolve_devices([])
    with pytest.raises(JaxvisError):
        sharding.resolve_devices('gpu')
    with pytest.raises(JaxvisError):
        sharding.resolve_devices([jax.devices()[0]] * 2)
