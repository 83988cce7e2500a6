"""The model learns: small end-to-end runs through ``tfseg.training.train`` on ``synthetic``.

Settings: 64 synthetic samples at 32 px, U-Net with 8 base filters and depth 2, batch 8,
16 epochs of 12 steps (about 15-20 s per run on 2 CPU cores), seed 0.

Stated figures (``pytest tests/test_learning.py``; seeds 0 and 1 gave test Dice 0.88/0.89
and 0.88/0.86 for float32/mixed_bfloat16):
    * float32 reaches a test Dice of at least 0.80 (an all-foreground prediction scores
      about 0.3, an all-background one 0);
    * mixed_bfloat16 lands within 0.06 Dice of float32 and also reaches 0.80.
"""

import pytest

from tfseg import training
from tfseg.config import TrainConfig

LEARNED_DICE = 0.80
PRECISION_GAP = 0.06
SETTINGS = dict(data="synthetic:64", image_size=32, base_filters=8, depth=2, batch_size=8, epochs=16,
                steps_per_epoch=12, seed=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    results = {}
    for precision in ("float32", "mixed_bfloat16"):
        config = TrainConfig(precision=precision, out=str(root / precision), **SETTINGS)
        results[precision] = training.train(config, verbose=0)
    return results


@pytest.mark.slow
def test_float32_run_reaches_the_stated_dice(runs):
    metrics = runs["float32"]
    assert metrics["precision"] == "float32" and metrics["epochs_completed"] >= 8
    assert metrics["test"]["dice"] >= LEARNED_DICE, metrics["test"]


@pytest.mark.slow
def test_mixed_bfloat16_lands_within_the_stated_dice_of_float32(runs):
    assert runs["mixed_bfloat16"]["precision"] == "mixed_bfloat16"
    bf16, f32 = runs["mixed_bfloat16"]["test"]["dice"], runs["float32"]["test"]["dice"]
    assert bf16 >= LEARNED_DICE, bf16
    assert abs(bf16 - f32) <= PRECISION_GAP, (bf16, f32)
