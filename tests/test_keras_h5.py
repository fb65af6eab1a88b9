"""load_keras_h5: every layout gives the same params; every bad file gets one clear WeightsError."""
import re

import h5py
import numpy as np
import pytest

from jaxvis.errors import WeightsError
from jaxvis.models import load_keras_h5, save_keras_notop_h5

VGG16_CONVS = ['block1_conv1', 'block1_conv2', 'block2_conv1', 'block2_conv2', 'block3_conv1', 'block3_conv2',
               'block3_conv3', 'block4_conv1', 'block4_conv2', 'block4_conv3', 'block5_conv1', 'block5_conv2',
               'block5_conv3']


def assert_same_params(got, want):
    assert list(got) == list(want)
    for name in want:
        assert set(got[name]) == {'kernel', 'bias'}
        for part in ('kernel', 'bias'):
            assert got[name][part].dtype == np.float32
            np.testing.assert_array_equal(got[name][part], want[name][part], err_msg=f'{name}/{part}')


def assert_one_line_naming(excinfo, path):
    msg = str(excinfo.value)
    assert '\n' not in msg
    assert str(path) in msg


LAYOUTS = {
    'official': lambda w, p, params: w.official(p, params),
    'legacy': lambda w, p, params: w.legacy(p, params),
    'legacy_top': lambda w, p, params: w.legacy(p, params, top=True),
    'legacy_model_weights': lambda w, p, params: w.legacy(p, params, top=True, model_weights=True),
    'keras3': lambda w, p, params: w.keras3(p, params),
    'keras3_top': lambda w, p, params: w.keras3(p, params, top=True),
    'keras3_hed_nested': lambda w, p, params: w.keras3(p, params, nested=True),
}


@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_every_layout_loads_to_identical_params(layout, h5w, vgg16_params, tmp_path):
    path = LAYOUTS[layout](h5w, tmp_path / f'{layout}.h5', vgg16_params)
    try:
        assert list(vgg16_params) == VGG16_CONVS
        assert_same_params(load_keras_h5(path), vgg16_params)  # model inferred
        assert_same_params(load_keras_h5(path, model='vgg16'), vgg16_params)
    finally:
        (tmp_path / f'{layout}.h5').unlink()  # 59 MB each: do not keep them in pytest's tmp


def test_legacy_layout_really_nests_datasets(h5w, tiny_params, tmp_path):
    # guards the writer itself: 'block1_conv1/kernel:0' is a subgroup plus a dataset, as Keras writes it
    path = h5w.legacy(tmp_path / 'l.h5', tiny_params)
    with h5py.File(path, 'r') as f:
        assert isinstance(f['block1_conv1/block1_conv1'], h5py.Group)
        assert f['block1_conv1/block1_conv1/kernel:0'].shape == (3, 3, 3, 4)
        assert list(f['block1_pool'].attrs['weight_names']) == []


@pytest.mark.parametrize('layout', ['official', 'keras3'])
def test_vgg19_is_inferred(layout, h5w, tmp_path):
    params = h5w.random_params(h5w.VGG19, seed=5)
    path = LAYOUTS[layout](h5w, tmp_path / 'vgg19.h5', params)
    try:
        got = load_keras_h5(path)
        assert 'block3_conv4' in got and 'block5_conv4' in got and len(got) == 16
        assert_same_params(got, params)
        assert_same_params(load_keras_h5(path, model='vgg19'), params)
        # VGG19's first 13 convs have VGG16's shapes: asking for vgg16 must not quietly take them
        with pytest.raises(WeightsError) as e:
            load_keras_h5(path, model='vgg16')
        assert_one_line_naming(e, path)
    finally:
        (tmp_path / 'vgg19.h5').unlink()


def test_vgg16_file_is_not_vgg19(vgg16_h5):
    with pytest.raises(WeightsError, match='these are vgg16 weights, not vgg19') as e:
        load_keras_h5(vgg16_h5, model='vgg19')
    assert_one_line_naming(e, vgg16_h5)


def test_keras3_numeric_order_puts_conv2d_10_eleventh(h5w, vgg16_params, tmp_path):
    path = h5w.keras3(tmp_path / 'k3.h5', vgg16_params)
    try:
        with h5py.File(path, 'r') as f:
            np.testing.assert_array_equal(f['layers/conv2d_10/vars/0'][()], vgg16_params['block5_conv1']['kernel'])
        got = load_keras_h5(path)
        np.testing.assert_array_equal(got['block5_conv1']['bias'], vgg16_params['block5_conv1']['bias'])
    finally:
        (tmp_path / 'k3.h5').unlink()


def test_save_keras_notop_h5_round_trips_and_matches_official_layout(h5w, vgg16_params, tmp_path):
    ours, ref = tmp_path / 'saved.h5', tmp_path / 'ref.h5'
    save_keras_notop_h5(vgg16_params, ours)
    h5w.official(ref, vgg16_params)
    try:
        assert_same_params(load_keras_h5(ours), vgg16_params)
        with h5py.File(ours, 'r') as a, h5py.File(ref, 'r') as b:
            assert list(a.attrs['layer_names']) == list(b.attrs['layer_names'])
            assert list(a['block1_conv1'].attrs['weight_names']) == list(b['block1_conv1'].attrs['weight_names'])
            assert list(a['block3_pool'].attrs['weight_names']) == []
    finally:
        ours.unlink()
        ref.unlink()


# ---------------------------------------------------------------- bad files

def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match='no such file') as e:
        load_keras_h5(tmp_path / 'nope.h5')
    assert_one_line_naming(e, tmp_path / 'nope.h5')


def test_not_hdf5(tmp_path):
    path = tmp_path / 'vgg16.h5'
    path.write_text('<html>404 Not Found</html>\n')
    with pytest.raises(WeightsError, match='not an HDF5 file') as e:
        load_keras_h5(path)
    assert_one_line_naming(e, path)


def test_truncated(vgg16_h5, tmp_path):
    data = open(vgg16_h5, 'rb').read()
    path = tmp_path / 'half.h5'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(WeightsError, match='truncated') as e:
        load_keras_h5(path)
    assert_one_line_naming(e, path)


def test_empty_hdf5(tmp_path):
    path = tmp_path / 'empty.h5'
    h5py.File(path, 'w').close()
    with pytest.raises(WeightsError, match='found 0') as e:
        load_keras_h5(path)
    assert_one_line_naming(e, path)


def _first_blocks(params, n_blocks=2):
    return {k: v for k, v in params.items() if int(k[5]) <= n_blocks}


@pytest.mark.parametrize('writer', ['official', 'legacy'])
def test_layer_missing(writer, h5w, vgg16_params, tmp_path):
    params = _first_blocks(vgg16_params)
    del params['block2_conv2']
    path = getattr(h5w, writer)(tmp_path / 'missing.h5', params)
    with pytest.raises(WeightsError, match="'block2_conv2' missing") as e:
        load_keras_h5(path, model='vgg16')
    assert_one_line_naming(e, path)


def test_layer_listed_without_group(h5w, vgg16_params, tmp_path):
    path = h5w.official(tmp_path / 'nogroup.h5', _first_blocks(vgg16_params))
    with h5py.File(path, 'a') as f:
        del f['block1_conv2']
    with pytest.raises(WeightsError, match="'block1_conv2' is listed") as e:
        load_keras_h5(path)
    assert_one_line_naming(e, path)


def test_kernel_shape_does_not_fit(h5w, vgg16_params, tmp_path):
    params = _first_blocks(vgg16_params)
    params['block2_conv1'] = {'kernel': np.zeros((3, 3, 64, 96), np.float32), 'bias': np.zeros(96, np.float32)}
    path = h5w.legacy(tmp_path / 'shape.h5', params)
    with pytest.raises(WeightsError, match=re.escape("'block2_conv1' has kernel (3, 3, 64, 96)")) as e:
        load_keras_h5(path)
    assert_one_line_naming(e, path)


@pytest.mark.parametrize('writer', ['official', 'legacy', 'keras3'])
def test_tiny_shapes_are_not_vgg16(writer, h5w, tiny_params, tmp_path):
    path = getattr(h5w, writer)(tmp_path / 'tiny.h5', tiny_params)
    with pytest.raises(WeightsError) as e:
        load_keras_h5(path, model='vgg16')
    assert_one_line_naming(e, path)
    assert ('block1_conv1' in str(e.value)) or ('found 13' in str(e.value) and writer == 'keras3')


def test_keras3_wrong_conv_count(h5w, vgg16_params, tmp_path):
    path = h5w.keras3(tmp_path / 'few.h5', _first_blocks(vgg16_params, 3))
    with pytest.raises(WeightsError, match='found 7 3x3 convolutions') as e:
        load_keras_h5(path)
    assert_one_line_naming(e, path)


def test_unknown_model_name(vgg16_h5):
    with pytest.raises(WeightsError, match="unknown model 'resnet'"):
        load_keras_h5(vgg16_h5, model='resnet')
