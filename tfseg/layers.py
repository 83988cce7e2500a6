"""Custom layers: SegNet's max pooling with indices and the unpooling that uses them.

Written with ``keras.ops`` only, so they run (and train, save and load) under the
TensorFlow, JAX and PyTorch backends; this module never imports TensorFlow.

SegNet (Badrinarayanan et al., 2017) remembers *where* each 2x2 max came from in the
encoder and, in the decoder, puts each value back at that place with zeros around it
("unpooling"). That keeps boundaries sharp without storing the whole encoder feature
map as U-Net's skip connections do.

Indices here are local to the window: ``index = 2 * row + col`` in ``{0, 1, 2, 3}``
for the positions ``(0, 0), (0, 1), (1, 0), (1, 1)`` of each 2x2 window, one per
channel. (``tf.nn.max_pool_with_argmax`` returns flat indices into the whole
tensor instead; local ones need no batch/offset arithmetic and are backend neutral.)
"""

from __future__ import annotations

import keras
from keras import ops

_WINDOW = 4  # 2x2 window, flattened row-major


def _spatial_sizes(x):
    """(height, width, channels) of an NHWC tensor: ints where static, tensors otherwise."""
    shape = ops.shape(x)
    return shape[1], shape[2], shape[3]


def _halve(size):
    return None if size is None else size // 2


def _double(size):
    return None if size is None else size * 2


@keras.saving.register_keras_serializable(package="tfseg")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """2x2 max pooling, stride 2, that also returns where each maximum was.

    Shapes:
        input ``[B, H, W, C]`` (channels last; H and W even) ->
        ``(pooled [B, H/2, W/2, C] in the input dtype, indices [B, H/2, W/2, C] int32)``.

    ``indices`` hold the position of the maximum inside its 2x2 window, ``2 * row + col``
    in ``{0, 1, 2, 3}``. Ties go to the first position in row-major order (the smallest
    index), on every backend. The gradient of ``pooled`` flows to exactly that one
    position, consistent with the indices.

    Example:

    >>> import numpy as np
    >>> x = np.array([[1, 5], [7, 2]], "float32").reshape(1, 2, 2, 1)
    >>> pooled, indices = MaxPoolingWithArgmax2D()(x)
    >>> float(pooled[0, 0, 0, 0]), int(indices[0, 0, 0, 0])
    (7.0, 2)
    """

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: expects [batch, height, width, channels], got shape {input_shape}")
        for axis, size in zip(("height", "width"), input_shape[1:3]):
            if size is not None and size % 2:
                raise ValueError(f"{self.name}: {axis} {size} is odd; 2x2 pooling with indices needs even sizes")
        self.built = True

    def call(self, inputs):
        height, width, channels = _spatial_sizes(inputs)
        # [B, H, W, C] -> [B, H/2, W/2, C, 4]: one row per 2x2 window, row-major
        windows = ops.reshape(inputs, (-1, height // 2, 2, width // 2, 2, channels))
        windows = ops.transpose(windows, (0, 1, 3, 5, 2, 4))
        windows = ops.reshape(windows, (-1, height // 2, width // 2, channels, _WINDOW))
        is_max = windows == ops.max(windows, axis=-1, keepdims=True)
        # smallest position among the maxima: deterministic tie-breaking on every backend
        positions = ops.arange(_WINDOW, dtype="int32")
        indices = ops.min(ops.where(is_max, positions, _WINDOW - 1), axis=-1)
        pooled = ops.sum(windows * ops.one_hot(indices, _WINDOW, dtype=windows.dtype), axis=-1)
        return pooled, indices

    def compute_output_spec(self, inputs):
        batch, height, width, channels = inputs.shape
        shape = (batch, _halve(height), _halve(width), channels)
        return (
            keras.KerasTensor(shape, dtype=self.compute_dtype),
            keras.KerasTensor(shape, dtype="int32"),
        )


@keras.saving.register_keras_serializable(package="tfseg")
class MaxUnpooling2D(keras.layers.Layer):
    """Puts each value back at its max position in a 2x2 window, zeros elsewhere.

    The inverse placement of :class:`MaxPoolingWithArgmax2D`:
    ``out[b, 2i + idx // 2, 2j + idx % 2, c] = values[b, i, j, c]`` with
    ``idx = indices[b, i, j, c]``, and 0 at the other three positions of the window.
    Differentiable with respect to ``values`` (the gradient of each output pixel goes
    to the value placed there); ``indices`` are integers and get no gradient.

    Shapes:
        ``values [B, h, w, C]``, ``indices [B, h, w, C]`` int in ``{0, 1, 2, 3}`` ->
        ``[B, 2h, 2w, C]`` in the dtype of ``values``.

    Example:

    >>> import numpy as np
    >>> values = np.array([3.0], "float32").reshape(1, 1, 1, 1)
    >>> indices = np.array([1], "int32").reshape(1, 1, 1, 1)
    >>> np.asarray(MaxUnpooling2D()(values, indices))[0, :, :, 0].tolist()
    [[0.0, 3.0], [0.0, 0.0]]
    """

    def call(self, values, indices):
        height, width, channels = _spatial_sizes(values)
        placed = ops.one_hot(ops.cast(indices, "int32"), _WINDOW, dtype=values.dtype)
        placed = placed * ops.expand_dims(values, -1)  # [B, h, w, C, 4]
        placed = ops.reshape(placed, (-1, height, width, channels, 2, 2))
        placed = ops.transpose(placed, (0, 1, 4, 2, 5, 3))  # [B, h, 2, w, 2, C]
        return ops.reshape(placed, (-1, height * 2, width * 2, channels))

    def compute_output_shape(self, values_shape, indices_shape):
        batch, height, width, channels = values_shape
        return (batch, _double(height), _double(width), channels)
