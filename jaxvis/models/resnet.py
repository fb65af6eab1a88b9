"""Keras's ResNet50 (``keras.applications.ResNet50(include_top=False)``, ResNet v1 with the stride on the
first 1x1 convolution) as a Flax module with Keras's layer names, and its Keras 'caffe' preprocessing.

Every Keras layer keeps its name: ``conv1_conv`` / ``conv1_bn`` ... ``conv5_block3_3_conv`` /
``conv5_block3_3_bn`` hold the params; the activations returned are ``conv1_conv``, ``conv1_relu``,
``pool1_pool`` and, per block, ``convS_blockB_1_relu``, ``_2_relu`` and ``_out`` (the block's output).
"""
from __future__ import annotations

import flax.linen as nn
import jax

from jaxvis.models.keras_layers import BatchNorm, Emitter, conv, max_pool_3x3, zero_pad

EPSILON = 1.001e-5
STAGES = ((2, 64, 3, 1), (3, 128, 4, 2), (4, 256, 6, 2), (5, 512, 3, 2))  # (stage, filters, blocks, stride)


def layer_table() -> tuple[tuple[str, str], ...]:
    """Every returned layer in forward order as ``(name, kind)``; kind 'conv' for a block's output (and
    ``conv1_relu``), 'pool', or 'inner' (inside a block, or before the ReLU)."""
    rows = [('conv1_conv', 'inner'), ('conv1_relu', 'conv'), ('pool1_pool', 'pool')]
    for stage, _, blocks, _ in STAGES:
        for b in range(1, blocks + 1):
            p = f'conv{stage}_block{b}'
            rows += [(f'{p}_1_relu', 'inner'), (f'{p}_2_relu', 'inner'), (f'{p}_out', 'conv')]
    return tuple(rows)


NAMES = tuple(name for name, _ in layer_table())


class ResNet50(nn.Module):
    """ResNet50 feature extractor, BatchNorm in inference mode.

    ``__call__(x)``: x ``[N, H, W, 3]`` caffe-preprocessed (BGR, ImageNet mean subtracted), float32 or
    bfloat16, H, W >= 32. Returns ``{layer: [N, H', W', C]}`` for every layer of :func:`layer_table` up
    to and including ``last_layer`` (default: ``conv5_block3_out``, ``[N, ~H/32, ~W/32, 2048]``).
    """

    last_layer: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        emit = Emitter(self.last_layer, NAMES)
        x = conv(64, (7, 7), strides=2, name='conv1_conv')(zero_pad(x, 3))
        if emit('conv1_conv', x):
            return emit.out
        x = nn.relu(BatchNorm(EPSILON, name='conv1_bn')(x))
        if emit('conv1_relu', x):
            return emit.out
        x = max_pool_3x3(zero_pad(x, 1))
        if emit('pool1_pool', x):
            return emit.out
        for stage, filters, blocks, stride in STAGES:
            for b in range(1, blocks + 1):
                p = f'conv{stage}_block{b}'
                s = stride if b == 1 else 1
                if b == 1:
                    shortcut = BatchNorm(EPSILON, name=f'{p}_0_bn')(
                        conv(4 * filters, (1, 1), strides=s, name=f'{p}_0_conv')(x))
                else:
                    shortcut = x
                y = nn.relu(BatchNorm(EPSILON, name=f'{p}_1_bn')(conv(filters, (1, 1), strides=s,
                                                                      name=f'{p}_1_conv')(x)))
                if emit(f'{p}_1_relu', y):
                    return emit.out
                y = nn.relu(BatchNorm(EPSILON, name=f'{p}_2_bn')(conv(filters, (3, 3), padding='SAME',
                                                                      name=f'{p}_2_conv')(y)))
                if emit(f'{p}_2_relu', y):
                    return emit.out
                y = BatchNorm(EPSILON, name=f'{p}_3_bn')(conv(4 * filters, (1, 1), name=f'{p}_3_conv')(y))
                x = nn.relu(shortcut + y)
                if emit(f'{p}_out', x):
                    return emit.out
        return emit.out
