"""One place for every default.

:class:`TrainConfig` is used by the ``tfseg train`` CLI (its flags are generated
from the fields), the Python API (:func:`tfseg.training.train`) and the run
folder's ``config.json``. Change a default here and every entry point follows.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from tfseg.errors import ConfigError
from tfseg.masks import check_ignore_class, check_num_classes

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
LOSSES = ("bce_dice", "dice", "bce", "focal", "tversky", "focal_tversky", "cce", "cce_dice")
CACHES = ("auto", "memory", "none")
SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)  # train / val / test
UPSAMPLINGS = ("transpose", "bilinear")
# keras: keras.layers.BatchNormalization (a model.keras loads with plain Keras); bfloat16:
# tfseg.layers.BatchNorm, which keeps bfloat16 activations in bfloat16 (faster under mixed_bfloat16).
BATCH_NORM_LAYERS = ("keras", "bfloat16")
LR_SCHEDULES = ("cosine", "plateau")
# Settings whose default changed: a config.json written before the setting existed gets the old value.
LEGACY_DEFAULTS = {"lr_schedule": "plateau", "batch_norm_layer": "bfloat16"}
DEFAULT_FOREGROUND_FRACTION = 0.5


def check_patch_options(patch_size, scale, foreground_fraction) -> None:
    """Raise :class:`ConfigError` naming an impossible ``patch_size``, ``scale`` or ``foreground_fraction``."""
    if patch_size is not None and (isinstance(patch_size, bool) or not isinstance(patch_size, int)
                                   or patch_size < 8):
        raise ConfigError(f"patch_size {patch_size!r}: must be an integer >= 8")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 < float(scale) <= 4.0:
        raise ConfigError(f"scale {scale!r}: must be a number in (0, 4]")
    if not 0.0 <= float(foreground_fraction) <= 1.0:
        raise ConfigError(f"foreground_fraction {foreground_fraction!r}: must be in [0, 1]")


def image_hw(image_size) -> Tuple[int, int]:
    """``N`` or ``(height, width)`` -> ``(height, width)`` of positive ints: the one reading of an image size.

    Raises:
        ConfigError: naming the value.

    Example:
        >>> image_hw(96), image_hw((64, 96))
        ((96, 96), (64, 96))
    """
    import numbers

    def side(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"image_size {image_size!r}: expected a positive integer or (height, width)")
        return int(value)

    if isinstance(image_size, (list, tuple)):
        if len(image_size) != 2:
            raise ConfigError(f"image_size {image_size!r}: expected a positive integer or (height, width)")
        return side(image_size[0]), side(image_size[1])
    return side(image_size), side(image_size)


def _setting(default, help, choices=None, metavar=None, cli=True):
    """A field with its CLI help, and optionally the accepted values and the flag's metavar;
    ``cli=False``: no flag (a setting the run reads from its data and stores in ``config.json``)."""
    metadata = {"help": help, "cli": cli}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if metavar is not None:
        metadata["metavar"] = metavar
    return field(default=default, metadata=metadata)


def flag_name(name: str) -> str:
    """The CLI flag of a field: ``image_size`` -> ``--image-size``."""
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """Every setting of a training run; enough to reproduce it.

    Field names are the CLI flags (``image_size`` -> ``--image-size``); each
    field's ``metadata["help"]`` is the flag's help text.

    Example:
        >>> config = TrainConfig(epochs=2)
        >>> TrainConfig.from_dict(config.to_dict()) == config
        True
        >>> config.diff(TrainConfig(epochs=2, loss="dice"))
        {'loss': ('bce_dice', 'dice')}
    """

    # Defaults are sized so that a bare `tfseg train` (U-Net on `synthetic`, 1000 images) reaches a
    # test Dice above 0.9 in minutes on a 2-core CPU; see README.md, "Training", for the measurement.
    # data
    data: str = _setting("synthetic", "data SOURCE: synthetic[:N], synthetic-large[:N], ph2:PATH, mads:PATH, "
                                      "folder:PATH, tfrecord:PATH or tfds:NAME[/CONFIG][?KEY=VALUE&...]",
                         metavar="SOURCE")
    image_size: int = _setting(96, "images are resized to N x N; a multiple of 2**depth")
    patch_size: Optional[int] = _setting(None, "train on random N x N crops at native resolution (times --scale) "
                                               "instead of resizing whole images to --image-size; val/test and "
                                               "predictions run a sliding window over whole images", metavar="N")
    scale: float = _setting(1.0, "with --patch-size: resize images by this factor first (0.5 halves each side)")
    foreground_fraction: float = _setting(DEFAULT_FOREGROUND_FRACTION, "with --patch-size: share of crops centred on a foreground pixel")
    batch_size: int = _setting(16, "images per training step")
    augment: bool = _setting(True, "random flips, rotations, crops and colour changes of the training images")
    val_fraction: float = _setting(0.15, "fraction of the samples (by group) in the validation split")
    test_fraction: float = _setting(0.15, "fraction of the samples (by group) in the test split")
    folds: Optional[int] = _setting(None, "cross-validation: cut the non-test samples into K folds (the test "
                                          "split stays fixed) and train one run per fold, RUN_DIR/fold-1 .. "
                                          "fold-K, summarised in RUN_DIR/cv.json; --val-fraction is then unused",
                                    metavar="K")
    fold: Optional[int] = _setting(None, "with --folds: train only fold I (1..K), e.g. one fold per machine",
                                   metavar="I")
    num_classes: int = _setting(1, "classes of class-id masks; 1 = binary, or as many as the data holds")
    ignore_class: Optional[int] = _setting(None, "mask value left out of the loss and the metrics (e.g. 255, "
                                                 "VOC's object borders); class-id masks only")
    normalization: Optional[str] = _setting("auto", "how pixels become model inputs: auto (x / 255 for 8-bit "
                                            "images, else per_band), uint8 (x / 255), per_band (mean and std of "
                                            "each band measured on the training split) or minmax:MIN,MAX; "
                                            "config.json stores the numbers used",
                                            metavar="auto|uint8|per_band|minmax:MIN,MAX")
    channels: Optional[int] = _setting(None, "bands of the images (read from the data)", cli=False)
    input_dtype: Optional[str] = _setting(None, "value type of the images (read from the data)", cli=False)
    cache: str = _setting("auto", "cache decoded images: in memory, not at all, or auto (memory when small)",
                          CACHES)
    skip_bad: bool = _setting(False, "skip unreadable or mismatched samples instead of stopping")
    # model
    model: str = _setting("unet", "architecture: unet, segnet, deeplabv3plus (tfseg.models.available_models())",
                          metavar="NAME")
    base_filters: int = _setting(8, "filters of the first encoder stage (doubled at each stage)")
    depth: int = _setting(4, "number of down-sampling stages")
    dropout: float = _setting(0.0, "dropout rate in the deepest blocks")
    batch_norm: bool = _setting(True, "batch normalisation after each convolution")
    batch_norm_layer: str = _setting("keras", "keras: keras.layers.BatchNormalization (model.keras then loads with "
                                     "plain Keras, without tfseg); bfloat16: tfseg.layers.BatchNorm, which keeps "
                                     "bfloat16 activations in bfloat16 (see BENCHMARKS.md for where it pays)",
                                     BATCH_NORM_LAYERS)
    upsampling: str = _setting("transpose", "decoder up-sampling: learned transposed convolution or bilinear",
                               UPSAMPLINGS)
    variant: Optional[str] = _setting(None, "segnet only: indices (the paper's pooling-index unpooling, "
                                            "the default) or simple (the lesson's bilinear SegNet)",
                                      metavar="NAME")
    encoder: Optional[str] = _setting(None, "pretrained keras.applications backbone for unet: mobilenetv2, "
                                            "resnet50, efficientnetv2b0", metavar="NAME")
    encoder_weights: Optional[str] = _setting(None, "backbone weights: imagenet, or none for random")
    freeze_encoder_epochs: int = _setting(0, "train N epochs with the encoder frozen, then everything at "
                                             "learning rate x0.1")
    # optimisation
    loss: str = _setting("bce_dice", "training loss", LOSSES)
    class_weights: Optional[str] = _setting(None, "weigh the loss by true class: auto (median-frequency balancing "
                                                  "measured on the training split) or w0,w1,... (class 0 first; "
                                                  "binary: background,foreground, with --loss bce)",
                                            metavar="auto|W0,W1,...")
    border_weight: Optional[str] = _setting(None, "weigh the loss by the U-Net paper's border map "
                                                  "1 + W0 exp(-(d1 + d2)^2 / 2 SIGMA^2) (d1, d2: distances in pixels "
                                                  "to the two nearest objects), so that the gaps between touching "
                                                  "objects count most; the paper uses 10,5",
                                            metavar="W0,SIGMA")
    learning_rate: float = _setting(2e-3, "Adam's peak learning rate")
    lr_schedule: str = _setting("cosine", "cosine: linear warm-up for one epoch, then cosine decay to 0 at the "
                                "last epoch; plateau: constant, halved when validation Dice stalls",
                                LR_SCHEDULES)
    epochs: int = _setting(15, "maximum number of epochs")
    steps_per_epoch: Optional[int] = _setting(None, "training steps per epoch (default: one pass over the data)")
    patience: int = _setting(8, "stop after N epochs without a better validation Dice")
    # execution
    precision: str = _setting("auto", "numeric precision; auto = mixed_float16 on a GPU; on a CPU with "
                              "bfloat16 instructions mixed_bfloat16 for U-Net/SegNet with >= 16 base filters; "
                              "else float32",
                              PRECISIONS)
    strategy: str = _setting("auto", "tf.distribute strategy", STRATEGIES)
    jit_compile: bool = _setting(False, "compile the training step with XLA")
    seed: int = _setting(0, "seeds the split, shuffling, augmentation and weight initialisation")
    deterministic: bool = _setting(False, "deterministic TensorFlow ops (slower; identical runs on one machine)")
    tensorboard: bool = _setting(False, "write TensorBoard logs and prediction images to RUN_DIR/logs")
    keep_backup: bool = _setting(False, "keep backup/'s last-epoch weights and optimizer state (about 3x the size of "
                                 "model.keras) when the run completes, so that more --epochs can continue it")
    out: Optional[str] = _setting(None, "run folder (default: runs/<model>-<data kind>)", metavar="RUN_DIR")

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first impossible value.

        Checks what needs no data or model: choices, ranges, types. The model
        builder checks its own options (e.g. image size vs depth), the data
        source its paths.
        """
        for option in dataclasses.fields(self):
            value, flag = getattr(self, option.name), option.name
            choices = option.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(f"{flag} {value!r}: choose one of {', '.join(choices)}")
        check_num_classes(self.num_classes)
        for name in ("image_size", "batch_size", "epochs", "base_filters", "depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} {value!r}: must be a positive integer")
        for name in ("patience", "freeze_encoder_epochs", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} {value!r}: must be a non-negative integer")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int)
                                                 or self.steps_per_epoch < 1):
            raise ConfigError(f"steps_per_epoch {self.steps_per_epoch!r}: must be a positive integer")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout {self.dropout!r}: must be in [0, 1)")
        if not (0.0 < self.val_fraction < 1.0 and 0.0 < self.test_fraction < 1.0
                and self.val_fraction + self.test_fraction < 1.0):
            raise ConfigError(
                f"val_fraction {self.val_fraction!r} / test_fraction {self.test_fraction!r}: "
                "each in (0, 1) and their sum below 1"
            )
        check_patch_options(self.patch_size, self.scale, self.foreground_fraction)
        from tfseg.data.bands import Normalization

        Normalization.parse(self.normalization)
        if self.folds is not None or self.fold is not None:
            from tfseg.data.splits import check_folds

            if self.folds is None:
                raise ConfigError(f"fold {self.fold!r}: needs --folds K")
            check_folds(self.folds, self.fold)
        if self.patch_size is None and self.scale != 1.0:
            raise ConfigError(f"--scale {self.scale!r}: only applies with --patch-size")
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) \
                or not 0 < self.learning_rate < math.inf:
            raise ConfigError(f"learning_rate {self.learning_rate!r}: must be a positive finite number")
        if self.ignore_class is not None:  # num_classes 1: the data's count, checked when the data is opened
            check_ignore_class(self.ignore_class, self.num_classes if self.num_classes > 1 else None)
        from tfseg.balance import check_class_weights_loss

        check_class_weights_loss(self.class_weights, self.loss, self.num_classes)
        from tfseg.data.borders import parse_border_weight

        parse_border_weight(self.border_weight)
        if self.freeze_encoder_epochs and not self.encoder and self.model == "unet":
            raise ConfigError("freeze_encoder_epochs: needs a pretrained --encoder")

    # --- conversions -----------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """The config of a ``config.json``; a setting it lacks (written before the setting existed)
        takes its value from before (:data:`LEGACY_DEFAULTS`), else today's default."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in values}, **values})

    def model_input_size(self) -> int:
        """The side of the model's square input: ``patch_size`` when training on patches, else ``image_size``."""
        return self.image_size if self.patch_size is None else self.patch_size

    def model_options(self, accepted=None) -> Dict[str, Any]:
        """Keyword arguments for :func:`tfseg.models.build_model`.

        Args:
            accepted: the option names the model takes
                (:func:`tfseg.models.accepted_options`); ``None`` = all. An option the model
                does not take is left out while it has its default, and passed (so that the
                builder refuses it, naming it) when it was set to something else: ``--model
                segnet --upsampling bilinear`` is an error, not silently ignored.
        """
        options = dict(
            base_filters=self.base_filters,
            depth=self.depth,
            dropout=self.dropout,
            batch_norm=self.batch_norm_option(),
            upsampling=self.upsampling,
            channels=self.channels or 3,  # build_model's own: the input's bands, read from the data
        )
        if self.variant:
            options["variant"] = self.variant
        if self.encoder:
            options["encoder"] = self.encoder
            options["encoder_weights"] = self.encoder_weights
            if self.normalization_kind() == "per_band":  # z-scored bands: the backbone's preprocessing expects [0, 1]
                options["standardized_inputs"] = True
        if accepted is None:
            return options
        defaults = TrainConfig.__dataclass_fields__
        return {name: value for name, value in options.items()
                if name in accepted or name in ("channels", "standardized_inputs") or value != defaults[name].default}

    def normalization_kind(self) -> Optional[str]:
        """``"uint8"``, ``"per_band"``, ``"minmax"``, or ``None`` while the data has not decided (``auto``)."""
        value = self.normalization
        kind = value.get("kind") if isinstance(value, dict) else value
        if isinstance(kind, str) and kind.startswith("minmax"):
            return "minmax"
        return None if kind in (None, "auto") else kind

    def pixel_options(self) -> Dict[str, Any]:
        """The :class:`tfseg.segment.Settings` fields a run's data decides: ``{"dtype": ..., "normalization": ...}``
        (what ``config.json`` stores; empty for a config written before them)."""
        options = {}
        if self.input_dtype is not None:
            options["dtype"] = self.input_dtype
        if self.normalization not in (None, "auto"):
            options["normalization"] = self.normalization
        return options

    def batch_norm_option(self):
        """The builders' ``batch_norm`` option: ``False`` (none), ``True`` (Keras' layer) or ``"bfloat16"``."""
        if not self.batch_norm:
            return False
        return True if self.batch_norm_layer == "keras" else self.batch_norm_layer

    def split_fractions(self) -> Tuple[float, float, float]:
        """(train, val, test) fractions; a cross-validation fold's run (``folds`` and ``fold`` set) gets a
        :class:`tfseg.data.splits.FoldSplit`, whose validation split is that fold."""
        fractions = (1.0 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction)
        if self.folds is not None and self.fold is not None:
            from tfseg.data.splits import FoldSplit

            return FoldSplit(fractions, self.fold, self.folds)
        return fractions

    def diff(self, other: "TrainConfig", ignore=("out", "epochs")) -> Dict[str, Tuple[Any, Any]]:
        """Settings that differ: ``{name: (self_value, other_value)}``. The settings read from the data
        (:data:`DATA_SETTINGS`) differ only when both sides say: ``auto``/unset matches what a run found,
        ``per_band`` matches its measured numbers."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a
                if k not in ignore and a[k] != b.get(k) and not (k in DATA_SETTINGS and _agree(a[k], b.get(k)))}


# Settings a run reads from its data and stores in config.json (tfseg.data.bands).
DATA_SETTINGS = ("normalization", "channels", "input_dtype")


def _agree(a, b) -> bool:
    """Whether two values of a data setting agree: unset/``auto`` matches anything; normalisations of one
    kind match when either has no numbers (``per_band`` before it is measured)."""
    if a in (None, "auto") or b in (None, "auto"):
        return True
    if not isinstance(a, (dict, str)) or not isinstance(b, (dict, str)):
        return a == b
    from tfseg.data.bands import Normalization

    first, second = Normalization.parse(a), Normalization.parse(b)
    return first.kind == second.kind and (not first.measured or not second.measured or first == second)


def default(name: str):
    """:class:`TrainConfig`'s default of setting ``name``: the one place the model builders take theirs from.

    Example:
        >>> default("depth"), default("upsampling")
        (4, 'transpose')
    """
    return TrainConfig.__dataclass_fields__[name].default

