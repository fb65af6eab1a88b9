"""VGG's own layers: the 3x3 convolution that runs as Winograd on a plan's layers, and 2x2 max pooling."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvis.models.winograd import conv3x3, conv3x3_prepared


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """Keras ``MaxPooling2D()``: 2x2 window, stride 2, 'valid' padding (odd sizes floor). NHWC.

    A reshape and a max over the two window axes: the same forward as ``nn.max_pool``, but its gradient
    is a cheap compare-and-select instead of XLA's select-and-scatter (the costliest op of the backward
    pass on XLA:CPU, docs/performance.md). At exact ties the gradient is shared between the tied inputs
    rather than given to the first one.
    """
    n, h, w, c = x.shape
    x = x[:, :h // 2 * 2, :w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Conv3x3(nn.Module):
    """``nn.Conv(features, (3, 3), padding='SAME')`` with the same params (``kernel [3, 3, C, K]``,
    ``bias [K]``, float32), computed by :func:`jaxvis.models.winograd.conv3x3` with ``impl``, the output
    in the input's dtype (for bf16 input: transforms in float32, products bf16 with float32 results).
    Params ``{'u', 'ub', 'bias'}`` (Winograd) or ``{'wf', 'wb', 'bias'}`` (oneDNN) in place of the kernel
    (:func:`jaxvis.models.vgg.prepare_params`) run :func:`jaxvis.models.winograd.conv3x3_prepared` on them."""

    features: int
    impl: str = 'direct'

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c, k = x.shape[-1], self.features
        if self.has_variable('params', 'wf'):   # oneDNN's layouts (prepare_params)
            y = conv3x3_prepared(x, (self.get_variable('params', 'wf'), self.get_variable('params', 'wb')),
                                 'onednn')
        elif self.has_variable('params', 'u'):  # (m + 2)^2 matrices [C, K] and [K, C] (winograd.split)
            y = conv3x3_prepared(x, (self.get_variable('params', 'u'), self.get_variable('params', 'ub')),
                                 self.impl)
        else:
            kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, c, k), jnp.float32)
            y = conv3x3(x, kernel.astype(x.dtype), self.impl)
        bias = self.param('bias', nn.initializers.zeros_init(), (k,), jnp.float32)
        return y + bias.astype(x.dtype)
