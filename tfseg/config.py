"""One place for every default.

:class:`TrainConfig` is used by the ``tfseg train`` CLI (its flags are generated
from the fields), the Python API (:func:`tfseg.training.train`) and the run
folder's ``config.json``. Change a default here and every entry point follows.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from tfseg.errors import ConfigError

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
LOSSES = ("bce_dice", "dice", "bce", "focal", "tversky", "focal_tversky", "cce", "cce_dice")


@dataclass
class TrainConfig:
    """Every setting of a training run; enough to reproduce it.

    Field names are the CLI flags (``image_size`` -> ``--image-size``).
    """

    # data
    data: str = "synthetic"
    image_size: int = 128
    batch_size: int = 16
    augment: bool = True
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    num_classes: int = 1
    cache: str = "auto"  # auto | memory | none
    skip_bad: bool = False
    # model
    model: str = "unet"
    base_filters: int = 16
    depth: int = 4
    dropout: float = 0.0
    batch_norm: bool = True
    upsampling: str = "transpose"  # transpose | bilinear
    encoder: Optional[str] = None
    encoder_weights: Optional[str] = None
    freeze_encoder_epochs: int = 0
    # optimisation
    loss: str = "bce_dice"
    learning_rate: float = 1e-3
    epochs: int = 30
    steps_per_epoch: Optional[int] = None
    patience: int = 8
    # execution
    precision: str = "auto"
    strategy: str = "auto"
    jit_compile: bool = False
    seed: int = 0
    deterministic: bool = False
    tensorboard: bool = False
    out: Optional[str] = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first impossible value."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"--loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        for name in ("image_size", "batch_size", "epochs", "base_filters", "depth", "num_classes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: must be a positive integer")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout {self.dropout!r}: must be in [0, 1)")
        if not (0.0 < self.val_fraction < 1.0 and 0.0 < self.test_fraction < 1.0
                and self.val_fraction + self.test_fraction < 1.0):
            raise ConfigError("--val-fraction/--test-fraction: each in (0, 1) and their sum below 1")
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning-rate {self.learning_rate!r}: must be positive")
        if self.cache not in ("auto", "memory", "none"):
            raise ConfigError(f"--cache {self.cache!r}: choose one of auto, memory, none")
        if self.upsampling not in ("transpose", "bilinear"):
            raise ConfigError(f"--upsampling {self.upsampling!r}: choose one of transpose, bilinear")

    # --- conversions -----------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def model_options(self) -> Dict[str, Any]:
        """Keyword arguments for :func:`tfseg.models.build_model`."""
        options = dict(
            base_filters=self.base_filters,
            depth=self.depth,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            upsampling=self.upsampling,
        )
        if self.encoder:
            options["encoder"] = self.encoder
            options["encoder_weights"] = self.encoder_weights
        return options

    def split_fractions(self) -> Tuple[float, float, float]:
        """(train, val, test) fractions."""
        return (1.0 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction)

    def diff(self, other: "TrainConfig", ignore=("out", "epochs")) -> Dict[str, Tuple[Any, Any]]:
        """Settings that differ: ``{name: (self_value, other_value)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b.get(k)}
