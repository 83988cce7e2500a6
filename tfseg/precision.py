"""The numeric precision of a run: which Keras dtype policy, and ``auto``'s choice.

``--precision`` takes one of :data:`tfseg.config.PRECISIONS`:

=================  ==========================================================
``auto``           ``mixed_float16`` when a GPU is visible, else ``float32``
``float32``        everything in float32
``mixed_float16``  float16 compute, float32 variables; ``Model.compile`` wraps the
                   optimizer in a ``LossScaleOptimizer`` itself (Keras 3
                   ``auto_scale_loss=True``), so no manual loss scaling here
``mixed_bfloat16`` bfloat16 compute, float32 variables (TPUs, recent CPUs/GPUs)
=================  ==========================================================

Models keep their last activation in float32 whatever the policy (see
:mod:`tfseg.models`), so probabilities, losses and Dice are float32.

Example:
    >>> from tfseg.precision import precision_policy, resolve_precision
    >>> resolve_precision("float32")
    'float32'
    >>> with precision_policy("mixed_bfloat16") as name:
    ...     name
    'mixed_bfloat16'
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List

import keras

from tfseg.config import PRECISIONS
from tfseg.errors import ConfigError


def gpu_visible() -> bool:
    """Whether TensorFlow sees at least one GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


#: /proc/cpuinfo flags of CPUs with bfloat16 arithmetic (AVX512-BF16 dot products, AMX tiles).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> List[str]:
    """The :data:`BF16_CPU_FLAGS` this CPU reports (``[]`` where ``cpuinfo`` is unreadable, e.g. not Linux).

    Example:
        >>> cpu_bf16_flags("/no/such/file")
        []
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in BF16_CPU_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def cpu_supports_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 instructions (oneDNN then runs bf16 convolutions natively)."""
    return bool(cpu_bf16_flags(cpuinfo))


def resolve_precision(name: str = "auto") -> str:
    """The Keras policy name that ``name`` stands for.

    Args:
        name: one of :data:`tfseg.config.PRECISIONS`.

    Returns:
        ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``; ``auto`` is
        ``mixed_float16`` with a GPU (tensor cores, about 2x faster) and
        ``float32`` on CPU (float16 has no fast CPU kernels).

    Raises:
        ConfigError: ``name`` is not a known precision.
    """
    if name not in PRECISIONS:
        raise ConfigError(f"--precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "mixed_float16" if gpu_visible() else "float32"
    return name


def apply_precision(name: str = "auto") -> str:
    """Set Keras' global dtype policy to ``name`` (resolved); return the policy name.

    Layers created afterwards use it; layers that already exist keep theirs.
    """
    policy = resolve_precision(name)
    keras.mixed_precision.set_global_policy(policy)
    return policy


@contextlib.contextmanager
def precision_policy(name: str = "auto") -> Iterator[str]:
    """Context manager: apply ``name`` inside, restore the previous global policy after.

    Yields:
        The resolved policy name.
    """
    previous = keras.mixed_precision.global_policy()
    try:
        yield apply_precision(name)
    finally:
        keras.mixed_precision.set_global_policy(previous)
