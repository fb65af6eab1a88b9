"""The Flax VGG against a plain numpy re-implementation, Keras names, caffe preprocessing, and what the
model protocol derives from the forward pass alone (layers, channels, sizes, strides)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis.errors import JaxvisError
from jaxvis.models import TinyVGG, deprocess, get_model, preprocess, probe

# Written out from keras.applications.VGG16/VGG19(include_top=False).layers (input layer left out).
KERAS_VGG16 = ['block1_conv1', 'block1_conv2', 'block1_pool',
               'block2_conv1', 'block2_conv2', 'block2_pool',
               'block3_conv1', 'block3_conv2', 'block3_conv3', 'block3_pool',
               'block4_conv1', 'block4_conv2', 'block4_conv3', 'block4_pool',
               'block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_pool']
KERAS_VGG19 = ['block1_conv1', 'block1_conv2', 'block1_pool',
               'block2_conv1', 'block2_conv2', 'block2_pool',
               'block3_conv1', 'block3_conv2', 'block3_conv3', 'block3_conv4', 'block3_pool',
               'block4_conv1', 'block4_conv2', 'block4_conv3', 'block4_conv4', 'block4_pool',
               'block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_conv4', 'block5_pool']


def ref_conv_relu(x, kernel, bias):
    """Keras Conv2D(3x3, padding='same', activation='relu') as 9 shifted matmuls; float64 numpy."""
    _, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = sum(np.einsum('nhwc,co->nhwo', xp[:, i:i + h, j:j + w], kernel[i, j].astype(np.float64))
              for i in range(3) for j in range(3))
    return np.maximum(out + bias, 0.0)


def ref_pool(x):
    """Keras MaxPooling2D(): 2x2, stride 2, 'valid' (a trailing odd row/column is dropped)."""
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :2 * h2, :2 * w2].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


def ref_forward(params, x):
    out = {}
    for name in KERAS_VGG16:
        x = ref_pool(x) if name.endswith('pool') else ref_conv_relu(x, params[name]['kernel'], params[name]['bias'])
        out[name] = x
    return out


@pytest.mark.parametrize('hw', [(32, 32), (35, 33)])
def test_flax_forward_equals_reference_at_every_layer(hw, tiny_params):
    x = np.random.default_rng(0).uniform(-120, 130, (2, *hw, 3)).astype(np.float32)
    with jax.numpy_dtype_promotion('strict'):
        got = TinyVGG().apply({'params': tiny_params}, jnp.asarray(x))
    want = ref_forward(tiny_params, x.astype(np.float64))
    assert list(got) == KERAS_VGG16
    for name in KERAS_VGG16:
        assert got[name].dtype == jnp.float32
        assert got[name].shape == want[name].shape, name
        scale = float(np.abs(want[name]).max())
        assert scale > 0, name  # a dead layer would compare nothing
        np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_last_layer_stops_there_and_needs_no_deeper_params(tiny_params):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 16, 16, 3)), jnp.float32)
    model = TinyVGG(last_layer='block2_conv1')
    init = jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']  # eager init is slow on CPU
    assert list(init) == ['block1_conv1', 'block1_conv2', 'block2_conv1']
    shallow = {k: tiny_params[k] for k in init}
    out = model.apply({'params': shallow}, x)
    assert list(out) == ['block1_conv1', 'block1_conv2', 'block1_pool', 'block2_conv1']
    full = TinyVGG().apply({'params': tiny_params}, x)
    np.testing.assert_array_equal(np.asarray(out['block2_conv1']), np.asarray(full['block2_conv1']))


def test_unknown_last_layer():
    with pytest.raises(ValueError, match='block9_conv1'):
        jax.eval_shape(lambda: TinyVGG(last_layer='block9_conv1').init(jax.random.key(0), jnp.zeros((1, 8, 8, 3))))


@pytest.mark.parametrize('model, names', [('vgg16', KERAS_VGG16), ('vgg19', KERAS_VGG19), ('tiny', KERAS_VGG16)])
def test_layer_names_are_keras_names(model, names):
    spec = get_model(model)
    assert list(probe.layer_names(spec)) == names  # derived from the forward pass, in its order
    assert list(probe.conv_layers(spec)) == [n for n in names if 'conv' in n]
    shapes = jax.eval_shape(spec.init, jax.random.key(0))
    assert list(shapes) == list(probe.conv_layers(spec))


def test_vgg16_param_shapes_are_keras_shapes():
    spec = get_model('vgg16')
    shapes = jax.eval_shape(spec.init, jax.random.key(0))
    assert shapes['block1_conv1']['kernel'].shape == (3, 3, 3, 64)
    assert shapes['block3_conv1']['kernel'].shape == (3, 3, 128, 256)
    assert shapes['block5_conv3']['kernel'].shape == (3, 3, 512, 512)
    assert shapes['block5_conv3']['bias'].shape == (512,)
    assert sum(v['kernel'].size + v['bias'].size for v in shapes.values()) == 14_714_688  # Keras' count


def test_preprocess_is_the_caffe_formula():
    rgb = np.random.default_rng(2).uniform(0, 255, (2, 5, 4, 3)).astype(np.float32)
    want = rgb[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_array_equal(np.asarray(preprocess(rgb)), want)
    red = np.asarray(preprocess(np.array([255.0, 0.0, 0.0], np.float32)))
    np.testing.assert_allclose(red, [-103.939, -116.779, 131.32], rtol=0, atol=1e-4)


def test_preprocess_deprocess_are_inverses():
    rgb = np.random.default_rng(3).uniform(0, 255, (3, 7, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(deprocess(preprocess(rgb))), rgb, rtol=0, atol=3e-5)
    x = np.random.default_rng(4).uniform(-130, 150, (3, 7, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(preprocess(deprocess(x))), x, rtol=0, atol=3e-5)
    ints = np.arange(256, dtype=np.float32)[:, None].repeat(3, 1)
    np.testing.assert_array_equal(np.round(np.asarray(deprocess(preprocess(ints)))), ints)


def test_odd_sizes_floor_at_pools_like_keras(tiny_params):
    spec = get_model('tiny')
    out = spec.features(tiny_params, jnp.zeros((1, 37, 37, 3)))
    keras = {'block1_pool': 18, 'block2_pool': 9, 'block3_pool': 4, 'block4_pool': 2, 'block5_pool': 1,
             'block1_conv2': 37, 'block3_conv3': 9, 'block5_conv3': 2}
    for name, size in keras.items():
        assert out[name].shape[1:3] == (size, size), name
    for name in probe.layer_names(spec):
        assert out[name].shape[1:3] == probe.spatial(spec, name, 37), name
        assert out[name].shape[3] == probe.channels(spec, name), name


def test_sizes_strides_and_errors_derived_from_the_forward_pass():
    spec = get_model('vgg16')
    assert probe.spatial(spec, 'block1_conv1', 224) == (224, 224)
    assert probe.spatial(spec, 'block4_pool', 224) == (14, 14)
    assert probe.spatial(spec, 'block5_conv3', 224) == (14, 14)
    assert probe.spatial(spec, 'block5_pool', 224) == (7, 7)
    assert probe.spatial(spec, 'block5_pool', 100) == (3, 3)
    assert probe.spatial(spec, 'block5_pool', 31) == (0, 0)
    assert [probe.stride(spec, n) for n in ('block1_conv1', 'block3_conv3', 'block4_pool')] == [1, 4, 16]
    assert [probe.min_size(spec, n) for n in ('block1_conv1', 'block3_conv1', 'block5_pool')] == [1, 4, 32]
    probe.check_size(spec, 'block5_pool', 32)
    with pytest.raises(JaxvisError, match='at least 32'):
        probe.check_size(spec, 'block5_pool', 31)
    with pytest.raises(JaxvisError, match='valid layers'):
        probe.channels(spec, 'block6_conv1')
    with pytest.raises(JaxvisError, match='known models'):
        get_model('resnet')
    assert get_model('vgg16') is spec and get_model('vgg16', conv='direct') is get_model('vgg16', conv='direct')
    with pytest.raises(JaxvisError, match='conv must be one of'):
        get_model('vgg16', conv='fft')
