"""The natural-image magnitude spectrum that MACO keeps fixed (:func:`jaxvis.param.maco`).

``jaxvis/data/maco_spectrum.npz`` holds ``magnitude`` ``[S, S // 2 + 1, 3]`` (``S = 128``, jaxvis's default image size): the mean, over
crops of the colour photos that ship in scikit-image's wheel, of ``|rfft2|`` (unnormalized, over the two
spatial axes) of each crop in Lucid's decorrelated colour space, with RGB in ``[0, 1]`` (Xplique's
``spectrum_decorrelated.npy`` is the same statistic over ImageNet). ``scripts/maco_spectrum.py`` makes it
with :func:`mean_magnitude`; the file also says which photos, their sha256 and the crops used.
:func:`template` resamples it to any ``(H, W)``.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from jaxvis.errors import JaxvisError

SPECTRUM_FILE = os.path.join(os.path.dirname(__file__), 'data', 'maco_spectrum.npz')


def mean_magnitude(images) -> np.ndarray:
    """``[N, H, W, C]`` (the photos already in decorrelated colour, :func:`jaxvis.param.rgb_to_decorrelated`
    of RGB in ``[0, 1]``) -> ``[H, W // 2 + 1, C]`` float32: the mean over images of ``|rfft2|``, in float64."""
    x = np.asarray(images, np.float64)
    return np.mean(np.abs(np.fft.rfft2(x, axes=(1, 2))), axis=0).astype(np.float32)


@functools.cache
def shipped() -> np.ndarray:
    """The shipped ``[S, S // 2 + 1, 3]`` float32 magnitude (read once)."""
    if not os.path.exists(SPECTRUM_FILE):
        raise JaxvisError(f'the MACO spectrum {SPECTRUM_FILE} is missing (run scripts/maco_spectrum.py)')
    with np.load(SPECTRUM_FILE) as f:
        return np.asarray(f['magnitude'], np.float32)


def resample(magnitude: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[S, S // 2 + 1, C]`` -> ``[h, w // 2 + 1, C]`` float32, bilinear in frequency (cycles per pixel).

    Each target coefficient reads the template at its own ``(fy, fx)`` (frequencies beyond the template's
    Nyquist read its edge), times ``h * w / S**2`` (an unnormalized FFT's magnitude grows with the pixel
    count). For ``(h, w) == (S, S)`` the template itself. Xplique resizes its template with
    ``tf.image.resize`` on the array layout instead.
    """
    s = magnitude.shape[0]
    if (h, w) == (s, s):
        return np.asarray(magnitude, np.float32)
    fy_src = np.fft.fftshift(np.fft.fftfreq(s))
    shifted = np.fft.fftshift(np.asarray(magnitude, np.float64), axes=0)
    fx_src = np.fft.rfftfreq(s)
    fy, fx = np.fft.fftfreq(h), np.fft.rfftfreq(w)
    rows = np.stack([np.stack([np.interp(fy, fy_src, shifted[:, j, c]) for j in range(shifted.shape[1])], 1)
                     for c in range(shifted.shape[2])], -1)                        # [h, S // 2 + 1, C]
    out = np.stack([np.stack([np.interp(fx, fx_src, rows[i, :, c]) for i in range(h)], 0)
                    for c in range(rows.shape[2])], -1)                            # [h, w // 2 + 1, C]
    return (out * (h * w) / float(s * s)).astype(np.float32)


@functools.lru_cache(maxsize=32)
def template(h: int, w: int) -> np.ndarray:
    """``[h, w // 2 + 1, 3]`` float32: the shipped magnitude resampled to an ``h x w`` image."""
    return resample(shipped(), int(h), int(w))
