"""Bootstrap intervals (tfseg.stats): their coverage by simulation, groups drawn as wholes, fixed seeds."""

import numpy as np
import pytest

from tfseg import stats
from tfseg.errors import ConfigError
from tfseg.metrics import Dice

SIMULATIONS = 200


def test_the_interval_of_a_mean_covers_the_true_mean_95_percent_of_the_time():
    # 200 data sets of 30 per-image scores drawn from Beta(4, 2), whose mean is 2/3
    rng = np.random.default_rng(2024)
    covered = []
    for _ in range(SIMULATIONS):
        low, high = stats.bootstrap(stats.mean_statistic("value", "counted"),
                                    stats.per_image_values(rng.beta(4.0, 2.0, 30)))
        covered.append(low <= 2 / 3 <= high)
    assert 0.90 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_the_interval_of_a_split_dice_covers_the_population_dice():
    # per image: lesion pixels ~ Poisson(400) of which 85% found; false positives ~ Poisson(60).
    # The population (pooled) Dice is 2 E[tp] / (2 E[tp] + E[fp] + E[fn]); the statistic is the
    # metric's own reduction of the summed counts (Dice.score_counts), as evaluate bootstraps it.
    rng = np.random.default_rng(7)
    dice = Dice(num_classes=1)
    tp_mean, fn_mean, fp_mean = 400 * 0.85, 400 * 0.15, 60.0
    truth = 2 * tp_mean / (2 * tp_mean + fp_mean + fn_mean)
    covered = []
    for _ in range(SIMULATIONS):
        n = 30
        lesion = rng.poisson(400, n)
        tp = rng.binomial(lesion, 0.85)
        fp = rng.poisson(fp_mean, n)
        fn = lesion - tp
        tn = 10000 - tp - fp - fn
        counts = np.zeros((4, n, 2))
        counts[:, :, 1] = tp, fp, fn, tn
        counts[:, :, 0] = tn, fn, fp, tp  # the background's view of the same pixels
        values = dict(zip(("tp", "fp", "fn", "tn"), counts))
        low, high = stats.bootstrap(lambda s: dice.score_counts(s["tp"], s["fp"], s["fn"], s["tn"]), values)
        covered.append(low <= truth <= high)
    assert 0.90 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_groups_are_drawn_as_wholes():
    # 6 images in 3 groups of identical pairs: every resample's sums are sums of whole pairs
    values = {"value": np.array([[1.0], [1.0], [5.0], [5.0], [9.0], [9.0]])}
    groups = ["a", "a", "b", "b", "c", "c"]
    unit, units, kind = stats.units_of(groups, 6)
    assert (units, kind) == (3, "groups") and list(unit) == [0, 0, 1, 1, 2, 2]
    sums = stats.resampled_sums(values, stats.draws(units, 500), unit, units)["value"][:, 0]
    # three draws of a pair sum: 2 * (x + y + z) with x, y, z in {1, 5, 9}
    assert set(np.unique(sums)) <= {2.0 * s for s in range(3, 28, 4)}
    assert stats.units_of(["a", "b", "c"], 3)[2] == "images" and stats.units_of(None, 4)[1:] == (4, "images")
    # a statistic whose images are alike within groups is less certain than the images suggest
    wide = stats.bootstrap(lambda s: s["value"][:, 0] / 6, values, groups=groups)
    narrow = stats.bootstrap(lambda s: s["value"][:, 0] / 6, values)
    assert wide[1] - wide[0] >= narrow[1] - narrow[0]


def test_draws_are_seeded_and_sum_to_the_units():
    a, b = stats.draws(7, 50), stats.draws(7, 50)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, stats.draws(7, 50, seed=1))
    assert (a.sum(axis=1) == 7).all() and a.shape == (50, 7)
    assert stats.draws(1, 3).tolist() == [[1.0], [1.0], [1.0]]  # one image, one resample: fine
    assert stats.draws(4, 1).shape == (1, 4)
    with pytest.raises(ConfigError, match="no images"):
        stats.draws(0)
    with pytest.raises(ConfigError, match="resamples 0"):
        stats.draws(3, 0)
    with pytest.raises(ConfigError, match="2 groups for 3 images"):
        stats.units_of(["a", "b"], 3)


def test_percentile_interval_leaves_out_resamples_without_a_score():
    values = np.concatenate([np.linspace(0, 1, 101), [np.nan] * 50])
    assert stats.percentile_interval(values) == pytest.approx([0.025, 0.975])
    assert stats.percentile_interval([np.nan, np.nan]) is None
    assert stats.percentile_interval(np.arange(11.0), level=0.8) == pytest.approx([1.0, 9.0])


def test_a_mean_over_images_without_scores():
    values = stats.per_image_values([0.5, np.nan, 1.0])
    assert values["counted"][:, 0].tolist() == [1.0, 0.0, 1.0]
    whole = {key: value.sum(axis=0, keepdims=True) for key, value in values.items()}  # every image once
    assert stats.mean_statistic("value", "counted")(whole).tolist() == [0.75]
    sums = {"value": np.array([[1.5], [0.0]]), "counted": np.array([[2.0], [0.0]])}
    result = stats.mean_statistic("value", "counted")(sums)
    assert result[0] == 0.75 and np.isnan(result[1])


def test_the_module_examples_run():
    import doctest

    assert doctest.testmod(stats).failed == 0
