"""Depthwise convolution as a sum of shifted, scaled slices: the same arithmetic as a grouped
convolution (``feature_group_count=C``), written so that XLA:CPU fuses it into elementwise loops.

XLA:CPU lowers a grouped convolution, and above all its gradient, to a slow generic loop: measured on a
2-core AMD EPYC (``scripts/depthwise_bench.py``), the input gradient of a 5x5 stride-2 depthwise layer of
EfficientNet-Lite0 at batch 8 took 255 ms grouped and 12 ms as shifted slices (1.7-24x over its shapes). Each output is
``sum_{i,j} x_pad[n, s*y + i, s*x + j, c] * w[i, j, 0, c]``, a per-pixel, per-channel sum, so the
image of one filter does not depend on the batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """TensorFlow-'SAME' depthwise convolution.

    x ``[N, H, W, C]``, kernel ``[k, k, 1, C]`` (Flax's layout for ``feature_group_count=C``), in x's
    dtype. Returns ``[N, ceil(H / stride), ceil(W / stride), C]``; equal to
    ``lax.conv_general_dilated(..., 'SAME', feature_group_count=C)`` up to the order of the k*k sums.
    """
    k_h, k_w = kernel.shape[:2]
    h, w = x.shape[1:3]
    (top, bottom), (left, right) = lax.padtype_to_pads((h, w), (k_h, k_w), (stride, stride), 'SAME')
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h, out_w = -(-h // stride), -(-w // stride)
    kernel = kernel.astype(x.dtype)
    out = None
    for i in range(k_h):
        for j in range(k_w):
            term = padded[:, i:i + (out_h - 1) * stride + 1:stride,
                          j:j + (out_w - 1) * stride + 1:stride, :] * kernel[i, j, 0]
            out = term if out is None else out + term
    return out
