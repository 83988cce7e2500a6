"""Custom layers: SegNet's max pooling with indices and the unpooling that uses them, the size check
of a model built for any input size, and a BatchNormalization that keeps bfloat16 activations in
bfloat16 (an option: the models use ``keras.layers.BatchNormalization`` by default, so that their
``.keras`` files load with plain Keras).

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


# --------------------------------------------------------------------------- size check
@keras.saving.register_keras_serializable(package="tfseg")
class SizeCheck(keras.layers.Layer):
    """Passes images through unchanged, refusing a height or width that is not a multiple of ``multiple``.

    A model built for any input size (``build_model(..., image_size=None)``) halves its feature maps
    ``depth`` times and joins them again, which only lines up for multiples of ``2**depth``. This
    layer says so where the size is first seen, instead of a shape error deep in the decoder:

    - where the size is known when the layer runs (eager calls, the JAX backend, a TensorFlow
      graph traced for one shape, a Keras symbolic tensor): ``ValueError`` naming the size and
      the nearest multiples;
    - where it is only known when a TensorFlow graph runs (traced for any size, e.g. ``predict``
      after several sizes, or a serving signature): the images are also reshaped to
      ``[B, H / m, m, W / m, m, C]``, which fails at run time for any other size, in this layer
      (``Input to reshape is a tensor with ... values``), which the builders name
      ``size_multiple_of_<m>`` (``keras.ops`` has no assertion).

    Args:
        multiple: the required divisor of height and width (``2**depth``).

    Example:

    >>> import numpy as np
    >>> SizeCheck(16)(np.zeros((1, 32, 48, 3), "float32")).shape
    (1, 32, 48, 3)
    >>> SizeCheck(16)(np.zeros((1, 30, 48, 3), "float32"))
    Traceback (most recent call last):
    ...
    ValueError: image height 30 is not a multiple of 16 (the model halves it 4 times); resize or pad it to 32 (or 16)
    """

    def __init__(self, multiple=16, **kwargs):
        super().__init__(**kwargs)
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f"SizeCheck multiple {multiple!r}: must be a positive integer")
        self.multiple = multiple

    def _check_static(self, shape):
        for axis, size in zip(("height", "width"), shape[1:3]):
            if isinstance(size, int) and size % self.multiple:
                lower = size // self.multiple * self.multiple
                upper = lower + self.multiple
                halvings = self.multiple.bit_length() - 1
                nearest = f"{upper} (or {lower})" if lower else str(upper)
                raise ValueError(f"image {axis} {size} is not a multiple of {self.multiple} (the model halves it "
                                 f"{halvings} times); resize or pad it to {nearest}")

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: expects [batch, height, width, channels], got shape {input_shape}")
        self._check_static(input_shape)
        self.built = True

    def call(self, images):
        self._check_static(tuple(images.shape))
        height, width, channels = _spatial_sizes(images)
        if isinstance(height, int) and isinstance(width, int):
            return images
        m = self.multiple
        # keras.ops has no assertion: a reshape into m x m blocks fails for any other size. Its result
        # must reach the output, or the graph optimiser drops it (a mean times 0: one pass over the input).
        blocks = ops.reshape(images, (-1, height // m, m, width // m, m, channels))
        return images + ops.cast(ops.mean(blocks), images.dtype) * 0

    def compute_output_shape(self, input_shape):
        self._check_static(input_shape)
        return input_shape

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


# --------------------------------------------------------------------------- batch normalization
_FAST_DTYPES = ("float32", "bfloat16")


def _normalize(x, mean, variance, gamma, beta, *, epsilon, axes, count):
    """``(x - mean) / sqrt(variance + epsilon) * gamma + beta`` as one scale and shift in ``x``'s dtype,
    with the whole backward pass written out (for ``ops.custom_gradient``).

    ``mean``/``variance``/``gamma``/``beta`` are float32 per-channel vectors; the mean and
    variance are those of this batch (functions of ``x``), and the gradient of ``x`` includes
    their part:
    ``dx = gamma * inv * (dy - mean(dy) - x_hat * mean(dy * x_hat))``, computed as
    ``dy * a - (x - mean) * k - c`` with per-channel float32 ``a, k, c`` cast once to ``x``'s
    dtype; the two reductions it needs (``sum(dy)``, ``sum(dy * x)``) accumulate in float32.
    """
    dtype = x.dtype
    inv = ops.rsqrt(variance + epsilon)
    scale = gamma * inv
    shift = beta - mean * scale
    y = x * ops.cast(scale, dtype) + ops.cast(shift, dtype)

    def grad(dy, variables=None):
        sum_dy = ops.cast(ops.sum(dy, axis=axes), "float32")
        sum_dy_x = ops.cast(ops.sum(dy * x, axis=axes), "float32")
        d_beta = sum_dy
        d_gamma = inv * (sum_dy_x - mean * sum_dy)
        k = scale * inv * d_gamma / count
        c = scale * d_beta / count
        dx = dy * ops.cast(scale, dtype) - (x - ops.cast(mean, dtype)) * ops.cast(k, dtype) - ops.cast(c, dtype)
        grads = (dx, ops.zeros_like(mean), ops.zeros_like(variance), d_gamma, d_beta)
        if variables:  # TensorFlow, eager: gamma/beta arrive as variables; their gradients are in `grads`
            return grads, [None] * len(variables)
        return grads

    return y, grad


@keras.saving.register_keras_serializable(package="tfseg")
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that keeps bfloat16 activations in bfloat16.

    Same weights, arguments, moving-statistics update and results as Keras' layer (a
    drop-in subclass; checkpoints are interchangeable). The difference is speed under
    ``mixed_bfloat16``: Keras casts every activation to float32 for batch norm and back
    (two full-tensor casts plus float32 arithmetic and an automatic backward pass of about
    ten more ops). Here the statistics are float32 (reductions accumulate in float32; the
    variance is computed about a first estimate of the mean, so no cancellation), the
    normalisation is one per-channel scale and shift in the activations' dtype, and the
    backward pass is written out (two reductions and six element-wise ops). On a 2-core
    AVX512-BF16 CPU this makes mixed_bfloat16 training of a U-Net (16 filters, 256 px)
    1.14x faster than with Keras' layer, float32 1.02x (``benchmarks/training_throughput.py
    --ablations``, BENCHMARKS.md); float32 results are the same as Keras' to about 1e-6.

    The fast path is taken for channels-last inputs in float32 or bfloat16 under the
    TensorFlow and JAX backends (``ops.custom_gradient``), with ``center`` and ``scale`` on;
    anything else (a mask, ``renorm``, ``synchronized``, float16, another axis, the PyTorch
    backend) runs Keras' own implementation. float16 stays with Keras' float32 upcast:
    its range cannot hold the squared deviations.

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, (8, 4, 4, 2)).astype("float32")
    >>> y = np.asarray(BatchNorm()(x, training=True))
    >>> bool(abs(y.mean()) < 1e-5 and abs(y.std() - 1) < 1e-3)
    True
    """

    def _fast_path(self, inputs, mask):
        rank = len(inputs.shape)
        return (mask is None and not self.renorm and not self.synchronized and self.center and self.scale
                and self.axis in (-1, rank - 1) and keras.backend.standardize_dtype(inputs.dtype) in _FAST_DTYPES
                and keras.backend.backend() in ("tensorflow", "jax"))

    def call(self, inputs, training=None, mask=None):
        x = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if not self._fast_path(x, mask):
            return super().call(inputs, training=training, mask=mask)
        gamma = ops.cast(self.gamma, "float32")
        beta = ops.cast(self.beta, "float32")
        if not (training and self.trainable):
            # moving statistics are constants: automatic differentiation of one scale and shift is exact
            scale = gamma * ops.rsqrt(ops.cast(self.moving_variance, "float32") + self.epsilon)
            shift = beta - ops.cast(self.moving_mean, "float32") * scale
            return x * ops.cast(scale, x.dtype) + ops.cast(shift, x.dtype)
        axes = tuple(range(len(x.shape) - 1))  # every axis but the channels (the fast path's axis=-1)
        shape = ops.shape(x)
        count = 1
        for axis in axes:
            count = count * shape[axis]
        count = ops.cast(count, "float32")
        mean, variance = self._batch_moments(ops.stop_gradient(x), axes, count)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        normalize = ops.custom_gradient(
            lambda x_, mean_, variance_, gamma_, beta_: _normalize(
                x_, mean_, variance_, gamma_, beta_, epsilon=self.epsilon, axes=axes, count=count))
        return normalize(x, ops.stop_gradient(mean), ops.stop_gradient(variance), gamma, beta)

    @staticmethod
    def _batch_moments(x, axes, count):
        """float32 ``(mean, variance)`` of ``x`` over ``axes`` without a float32 copy of ``x``: a first mean
        ``m0`` in ``x``'s dtype, then ``mean = m0 + E[x - m0]``, ``variance = E[(x - m0)^2] - E[x - m0]^2``."""
        first = ops.sum(x, axis=axes) / ops.cast(count, x.dtype)
        deviation = x - first
        shift = ops.cast(ops.sum(deviation, axis=axes), "float32") / count
        square = ops.cast(ops.sum(deviation * deviation, axis=axes), "float32") / count
        mean = ops.cast(first, "float32") + shift
        variance = ops.maximum(square - shift * shift, 0.0)
        return mean, variance
