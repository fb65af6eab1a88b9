"""ResNet50 and InceptionV3: every Keras layout loads to the same params, by Keras's order; the forward
pass matches real Keras's (reference computed once by scripts/keras_apps_reference.py on the synthetic
weights of keras_apps_files); a wrong file gets one line naming what was expected. No TensorFlow."""
import jax
import keras_apps_files as kf
import numpy as np
import pytest

from jaxvis.errors import JaxvisError, WeightsError
from jaxvis.models import get_model, load_keras_h5, probe
from jaxvis.models.keras_apps_h5 import FILES, ORDER, expected

MODELS = ('resnet50', 'inception_v3')


@pytest.fixture
def synth(keras_apps_synth):
    return keras_apps_synth


@pytest.fixture
def official(keras_apps_h5):
    return keras_apps_h5


def by_order(model, arrays):
    """What the params must be: the k-th weighted layer's arrays under the k-th name of Keras's order."""
    return {layer: dict(zip(roles, a)) for (layer, roles, _), a in zip(expected(model), arrays)}


def assert_params_equal(got, want):
    assert list(got) == list(want)
    for layer in want:
        assert list(got[layer]) == list(want[layer]), layer
        for role, a in want[layer].items():
            assert got[layer][role].dtype == np.float32
            np.testing.assert_array_equal(got[layer][role], a, err_msg=f'{layer}/{role}')


def test_layout_description_is_the_order_the_loader_uses():
    for m in MODELS:
        rows = kf.weighted(kf.layout(m))
        assert tuple(r[0] for r in rows) == ORDER[m]
        assert [tuple(tuple(s) for _, s in r[2]) for r in rows] == [e[2] for e in expected(m)]
    # Keras's order is not the order the layers are built in: the shortcut comes after the 2nd conv
    assert ORDER['resnet50'][6:10] == ('conv2_block1_0_conv', 'conv2_block1_3_conv', 'conv2_block1_0_bn',
                                       'conv2_block1_3_bn')
    assert len(ORDER['resnet50']) == 106 and len(ORDER['inception_v3']) == 188


@pytest.mark.parametrize('model, layout', [('resnet50', 'keras3_save'), ('inception_v3', 'keras3_weights')])
def test_keras3_layouts_load_by_keras_order(model, layout, synth, tmp_path):
    if layout == 'keras3_weights':  # .weights.h5: layers/conv2d_<k>/vars, <k> counting in Keras's order
        path = kf.write_keras3(tmp_path / 'm.weights.h5', model, synth[model])
    else:  # Keras 3 model.save('m.h5'): the legacy layout under model_weights, names without ':0'
        path = kf.write_legacy(tmp_path / 'm.h5', model, synth[model], suffix='', model_weights=True)
    assert_params_equal(load_keras_h5(path, model=model), by_order(model, synth[model]))


@pytest.mark.parametrize('model', MODELS)
def test_official_layout_loads_and_activations_match_real_keras(model, synth, official):
    """Keras 3.15.1's own activations (checked-in reference) on the same synthetic weights and image."""
    ref = np.load(kf.REFERENCE)
    m = get_model(model)
    params = load_keras_h5(official[model], model=model)
    assert_params_equal(params, by_order(model, synth[model]))
    out = jax.jit(lambda p, x: m.features(p, x))(params, m.preprocess(ref[f'{model}/rgb']))
    layers = [k.split('/')[1] for k in ref.files if k.startswith(model + '/') and k.endswith('/mean')]
    assert len(layers) == (21 if model == 'resnet50' else 11)
    for name in layers:
        a, mean, fmap = np.asarray(out[name]), ref[f'{model}/{name}/mean'], ref[f'{model}/{name}/map']
        atol = 1e-5 * max(np.abs(mean).max(), np.abs(fmap).max())
        np.testing.assert_allclose(a.mean(axis=(0, 1, 2)), mean, rtol=0, atol=atol, err_msg=name)
        np.testing.assert_allclose(a[0, :, :, :4], fmap, rtol=0, atol=atol, err_msg=name)


def assert_one_line(excinfo, *parts):
    msg = str(excinfo.value)
    assert '\n' not in msg
    for part in parts:
        assert part in msg, (part, msg)


def test_wrong_files_get_one_line_naming_the_expected_file(synth, official, tiny_h5, tmp_path):
    with pytest.raises(WeightsError) as e:
        load_keras_h5(official['inception_v3'], model='resnet50')
    assert_one_line(e, '188 layers with weights', '106', FILES['resnet50'])
    with pytest.raises(WeightsError) as e:
        load_keras_h5(tiny_h5, model='inception_v3')
    assert_one_line(e, '13 layers with weights', FILES['inception_v3'])
    cut = kf.write_legacy(tmp_path / 'cut.h5', 'resnet50', synth['resnet50'], drop=1)
    with pytest.raises(WeightsError) as e:
        load_keras_h5(cut, model='resnet50')
    assert_one_line(e, '105 layers with weights', FILES['resnet50'])
    truncated = tmp_path / 'truncated.h5'
    with open(official['resnet50'], 'rb') as f:
        truncated.write_bytes(f.read(3_000_000))
    with pytest.raises(WeightsError) as e:
        load_keras_h5(truncated, model='resnet50')
    assert_one_line(e, str(truncated), FILES['resnet50'])
    bad = [list(a) for a in synth['resnet50']]
    bad[2][0] = np.zeros((3, 3, 64, 64), np.float32)  # conv2_block1_1_conv is 1x1
    wrong = kf.write_legacy(tmp_path / 'wrong.h5', 'resnet50', bad)
    with pytest.raises(WeightsError) as e:
        load_keras_h5(wrong, model='resnet50')
    assert_one_line(e, "layer 3 with weights ('conv2_block1_1_conv')", 'conv2_block1_1_conv', FILES['resnet50'])


def test_layers_kinds_and_unknown_layer():
    resnet = get_model('resnet50')
    names = list(probe.layer_names(resnet))
    assert names[:3] == ['conv1_conv', 'conv1_relu', 'pool1_pool'] and names[-1] == 'conv5_block3_out'
    assert [n for n in names if resnet.kinds[n] == 'conv'][-3:] == ['conv5_block1_out', 'conv5_block2_out',
                                                                    'conv5_block3_out']
    assert probe.layer_shapes(resnet)['conv5_block3_out'] == (7, 7, 2048)
    inception = get_model('inception_v3')
    assert list(probe.layer_names(inception)) == [f'mixed{i}' for i in range(11)]
    shapes = probe.layer_shapes(inception)
    assert shapes['mixed7'] == (12, 12, 768) and shapes['mixed10'] == (5, 5, 2048)  # at 224 x 224
    with pytest.raises(JaxvisError, match='unknown layer'):
        inception.features({}, np.zeros((1, 75, 75, 3), np.float32), 'block5_conv1')
