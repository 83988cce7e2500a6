"""The numeric precision of a run: which Keras dtype policy, and ``auto``'s choice.

``--precision`` takes one of :data:`tfseg.config.PRECISIONS`:

=================  ==========================================================
``auto``           ``mixed_float16`` when a GPU is visible; on a CPU with bfloat16
                   instructions ``mixed_bfloat16`` for the plain U-Net/SegNet at 16 or
                   more base filters (where ``benchmarks/training_throughput.py``
                   measured it faster at equal Dice); else ``float32``
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
from typing import Any, Iterator, List, Optional

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


#: ``auto`` picks mixed_bfloat16 on a bfloat16 CPU from this many base filters up. Measured on a 2-core
#: AVX512-BF16 EPYC (BENCHMARKS.md, section 2): at 16 filters (the lesson's 16-32-64-128 networks)
#: bfloat16 trains U-Net and SegNet 1.24-1.48x faster than float32 at 128-256 px, and a complete
#: run reaches the same or better Dice; at 8 filters and 96 px (``tfseg train``'s default) it
#: gains only 1.05x.
BF16_MIN_BASE_FILTERS = 16

#: The models ``auto``'s CPU rule was measured on (pretrained encoders were not).
BF16_MEASURED_MODELS = ("unet", "segnet")


def cpu_prefers_bf16(config: Optional[Any] = None, cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether ``auto`` runs ``config`` (a :class:`tfseg.config.TrainConfig`) in mixed_bfloat16 on this CPU.

    True on a CPU with bfloat16 instructions for the plain U-Net/SegNet (no pretrained
    encoder) with at least :data:`BF16_MIN_BASE_FILTERS` base filters; False otherwise,
    and False without a config (nothing to judge by).
    """
    if config is None or not cpu_supports_bf16(cpuinfo):
        return False
    return (getattr(config, "model", None) in BF16_MEASURED_MODELS and not getattr(config, "encoder", None)
            and int(getattr(config, "base_filters", 0)) >= BF16_MIN_BASE_FILTERS)


def resolve_precision(name: str = "auto", config: Optional[Any] = None) -> str:
    """The Keras policy name that ``name`` stands for.

    Args:
        name: one of :data:`tfseg.config.PRECISIONS`.
        config: the run's :class:`tfseg.config.TrainConfig`, for ``auto`` on a CPU.

    Returns:
        ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``. ``auto`` is
        ``mixed_float16`` with a GPU (tensor cores, about 2x faster); on a CPU,
        ``mixed_bfloat16`` where :func:`cpu_prefers_bf16` (bfloat16 instructions and a
        model wide enough to gain), else ``float32`` (float16 has no fast CPU kernels).

    Raises:
        ConfigError: ``name`` is not a known precision.
    """
    if name not in PRECISIONS:
        raise ConfigError(f"precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if gpu_visible():
            return "mixed_float16"
        return "mixed_bfloat16" if cpu_prefers_bf16(config) else "float32"
    return name


def apply_precision(name: str = "auto", config: Optional[Any] = None) -> str:
    """Set Keras' global dtype policy to ``name`` (resolved with ``config``); return the policy name.

    Layers created afterwards use it; layers that already exist keep theirs.
    """
    policy = resolve_precision(name, config)
    keras.mixed_precision.set_global_policy(policy)
    return policy


@contextlib.contextmanager
def precision_policy(name: str = "auto", config: Optional[Any] = None) -> Iterator[str]:
    """Context manager: apply ``name`` (resolved with ``config``) inside, restore the previous global policy after.

    Yields:
        The resolved policy name.
    """
    previous = keras.mixed_precision.global_policy()
    try:
        yield apply_precision(name, config)
    finally:
        keras.mixed_precision.set_global_policy(previous)
