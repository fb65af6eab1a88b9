"""`jaxvis dream` end to end on the tiny model, its weights in a small file in the official layout."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

import jaxvis.dream.ascent
from jaxvis.cli import main
from jaxvis.cli.dream import parse_layers
from jaxvis.edge.images import read_image
from jaxvis.edge.locations import file_digest
from jaxvis.errors import JaxvisError

H, W = 48, 64      # the size test_deepdream.py compiles for too


@pytest.fixture
def tiny_cli(monkeypatch, tiny_h5):
    """``--model tiny`` reads its weights from ``$JAXVIS_WEIGHTS`` (a model without an official file)."""
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tiny_h5))
    return tiny_h5


def no_temp_files(folder) -> bool:
    return not [f for _, _, fs in os.walk(folder) for f in fs if f.endswith('.part')]


def photo(mode: str = 'RGB', size=(W, H)) -> Image.Image:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    if mode == 'RGBA':
        alpha = np.full(size[::-1], 255, np.uint8)
        alpha[:, : size[0] // 2] = 0
        im = rgb.copy()
        im.putalpha(Image.fromarray(alpha))
        return im
    if mode == 'P':
        return rgb.quantize(16)
    return rgb.convert(mode)


def dream(tmp_path, src, *extra):
    return main(['dream', str(src), '--model', 'tiny', '--layer', 'block3_conv3', '--octaves', '1', '--steps', '2',
                 '--quiet', '--out', str(tmp_path / 'dream.png'), *extra])


def one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('jaxvis'), err
    for n in needles:
        assert n in err, err
    return err


def test_writes_png_and_manifest(tiny_cli, tmp_path):
    src = tmp_path / 'in.png'
    photo().save(src)
    assert dream(tmp_path, src, '--seed', '3') == 0
    out = Image.open(tmp_path / 'dream.png')
    assert out.size == (W, H) and out.mode == 'RGB'
    assert np.abs(np.asarray(out, float) - np.asarray(Image.open(src), float)).mean() > 1  # it dreamed
    m = json.loads((tmp_path / 'dream.json').read_text())
    assert m['weights']['sha256'] == file_digest(tiny_cli) and m['seed'] == 3 and m['model'] == 'tiny'
    assert m['config']['layers'] == {'block3_conv3': 1.0} and m['config']['steps'] == 2
    assert m['frames_done'] == 1 and not m['interrupted'] and m['size'] == [W, H]
    assert len(m['history']) == 1 and len(m['history'][0]['objective'][0]) == 2
    assert m['environment']['jax'] and m['input']['sha256'] == file_digest(src)
    assert no_temp_files(tmp_path)


def test_sequence_writes_frames_and_a_gif(tiny_cli, tmp_path):
    src = tmp_path / 'in.png'
    photo().save(src)
    gif = tmp_path / 'dream.gif'
    assert dream(tmp_path, src, '--frames', '3', '--zoom', '1.1', '--rotate', '2', '--gif', str(gif)) == 0
    with Image.open(gif) as g:
        assert g.n_frames == 3 and g.size == (W, H)
    frames = sorted(os.listdir(tmp_path / 'dream_frames'))
    assert frames == ['frame_0000.png', 'frame_0001.png', 'frame_0002.png']
    last = np.asarray(Image.open(tmp_path / 'dream_frames' / frames[-1]))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'dream.png')), last)
    assert json.loads((tmp_path / 'dream.json').read_text())['frames_done'] == 3


def test_mp4_holds_the_frames(tiny_cli, tmp_path):
    """The MP4 goes through the ffmpeg that the imageio-ffmpeg wheel ships; decoded again, it has every
    frame at the input's size and is close to the frame PNGs (H.264 is lossy)."""
    import imageio_ffmpeg

    src = tmp_path / 'in.png'
    photo().save(src)
    mp4 = tmp_path / 'dream.mp4'
    assert dream(tmp_path, src, '--frames', '3', '--mp4', str(mp4), '--fps', '5') == 0
    reader = imageio_ffmpeg.read_frames(str(mp4))
    meta = next(reader)
    decoded = [np.frombuffer(f, np.uint8).reshape(H, W, 3) for f in reader]
    assert tuple(meta['size']) == (W, H) and len(decoded) == 3 and meta['fps'] == 5
    for i, frame in enumerate(decoded):
        png = np.asarray(Image.open(tmp_path / 'dream_frames' / f'frame_{i:04d}.png'), float)
        assert np.abs(frame - png).mean() < 12, i  # lossy, but the same picture
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize('mode', ['L', 'RGBA', 'P'])
def test_grayscale_rgba_and_palette_inputs(tiny_cli, tmp_path, mode):
    src = tmp_path / f'in_{mode}.png'
    photo(mode).save(src)
    assert dream(tmp_path, src) == 0
    out = Image.open(tmp_path / 'dream.png')
    assert out.size == (W, H) and out.mode == 'RGB'


def test_read_image_conversions(tmp_path):
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): a 64 x 48 file shows as 48 x 64
    exif = Image.Exif()
    exif[0x0112] = 6
    photo().save(tmp_path / 'rot.jpg', exif=exif)
    arr, size = read_image(str(tmp_path / 'rot.jpg'))
    assert arr.shape == (W, H, 3) and size == (H, W) and arr.dtype == np.float32
    # transparency goes onto white; grey stays grey
    arr, _ = read_image(str(_save(tmp_path / 'a.png', photo('RGBA'))))
    assert np.all(arr[:, : W // 2] == 255)
    arr, _ = read_image(str(_save(tmp_path / 'l.png', photo('L'))))
    assert np.all(arr[..., 0] == arr[..., 2])
    # 16-bit grayscale is scaled, not clipped
    Image.fromarray(np.full((H, W), 65535, np.uint16)).save(tmp_path / 'g16.png')
    arr, _ = read_image(str(tmp_path / 'g16.png'))
    assert np.all(arr == 255)
    # --max-size shrinks the longer side
    arr, size = read_image(str(tmp_path / 'l.png'), max_size=32)
    assert arr.shape == (24, 32, 3) and size == (W, H)


def _save(path, im):
    im.save(path)
    return path


def test_parse_layers():
    assert parse_layers(['block4_conv3', 'block5_conv1:0.5']) == {'block4_conv3': 1.0, 'block5_conv1': 0.5}
    for bad in (['x:abc'], [':1'], ['a', 'a'], ['a:nan']):
        with pytest.raises(JaxvisError):
            parse_layers(bad)


@pytest.mark.parametrize('case', ['missing', 'text', 'folder', 'truncated'])
def test_bad_input_file_exit_2_one_line(tiny_cli, tmp_path, capsys, case):
    src = tmp_path / 'in.png'
    if case == 'text':
        src.write_text('not an image\n')
    elif case == 'folder':
        src.mkdir()
    elif case == 'truncated':
        photo().save(src)
        src.write_bytes(src.read_bytes()[:200])
    assert dream(tmp_path, src) == 2
    one_error_line(capsys, str(src))
    assert not (tmp_path / 'dream.png').exists()


@pytest.mark.parametrize('extra, needle', [
    (['--layer', 'block9_conv1'], 'valid layers'),
    (['--octave-scale', '0.5'], 'octave scale'),
    (['--frames', '0'], 'frames'),
    (['--layer', 'block3_conv3:abc'], 'not a number'),
    (['--out', 'dream.jpg'], '.png'),
])
def test_bad_options_exit_2_one_line(tiny_cli, tmp_path, capsys, extra, needle):
    src = tmp_path / 'in.png'
    photo().save(src)
    assert dream(tmp_path, src, *extra) == 2
    one_error_line(capsys, needle)


def test_image_too_small_for_the_layer(tiny_cli, tmp_path, capsys):
    src = tmp_path / 'small.png'
    photo(size=(3, 3)).save(src)
    assert dream(tmp_path, src) == 2
    one_error_line(capsys, 'at least 4 pixels')


def test_unwritable_output_exit_2(tiny_cli, tmp_path, capsys):
    src = tmp_path / 'in.png'
    photo().save(src)
    (tmp_path / 'afile').write_text('x')
    assert main(['dream', str(src), '--model', 'tiny', '--quiet', '--out', str(tmp_path / 'afile' / 'd.png')]) == 2
    one_error_line(capsys, 'afile')


def test_ctrl_c_keeps_finished_frames(tiny_cli, tmp_path, monkeypatch, capsys):
    src = tmp_path / 'in.png'
    photo().save(src)
    real, calls = jaxvis.dream.ascent.deepdream, []

    def interrupted_on_third_frame(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(jaxvis.dream.ascent, 'deepdream', interrupted_on_third_frame)
    assert dream(tmp_path, src, '--frames', '5', '--gif', str(tmp_path / 'd.gif')) == 130
    assert sorted(os.listdir(tmp_path / 'dream_frames')) == ['frame_0000.png', 'frame_0001.png']
    for f in ('frame_0000.png', 'frame_0001.png'):
        Image.open(tmp_path / 'dream_frames' / f).load()  # complete files
    m = json.loads((tmp_path / 'dream.json').read_text())
    assert m['interrupted'] and m['frames_done'] == 2 and len(m['history']) == 2
    assert not (tmp_path / 'd.gif').exists() and not (tmp_path / 'dream.png').exists()
    assert no_temp_files(tmp_path)
    assert 'interrupted' in capsys.readouterr().err
