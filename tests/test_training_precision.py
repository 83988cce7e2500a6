"""--precision and --strategy: what ``auto`` picks, that the policy is restored, loss scaling under float16."""

import keras
import pytest

from tfseg import training
from tfseg.config import TrainConfig
from tfseg.distribute import get_strategy, strategy_name
from tfseg.errors import ConfigError
from tfseg.precision import gpu_visible, precision_policy, resolve_precision


def test_auto_is_mixed_float16_on_a_gpu_and_float32_otherwise(monkeypatch):
    from tfseg import precision

    monkeypatch.setattr(precision, "gpu_visible", lambda: True)
    assert resolve_precision("auto") == "mixed_float16"
    monkeypatch.setattr(precision, "gpu_visible", lambda: False)
    assert resolve_precision("auto") == "float32"
    for name in ("float32", "mixed_float16", "mixed_bfloat16"):
        assert resolve_precision(name) == name


def test_auto_on_a_bf16_cpu_picks_bfloat16_only_where_it_was_measured_faster(tmp_path, monkeypatch):
    from tfseg import precision

    bf16, plain = tmp_path / "bf16", tmp_path / "plain"
    bf16.write_text("processor : 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    plain.write_text("processor : 0\nflags\t\t: fpu sse avx512f\n")
    wide, thin = TrainConfig(base_filters=16), TrainConfig(base_filters=8)
    assert precision.cpu_prefers_bf16(wide, str(bf16))
    assert not precision.cpu_prefers_bf16(thin, str(bf16))  # too thin to gain: float32
    assert not precision.cpu_prefers_bf16(wide, str(plain))  # no bfloat16 instructions
    assert not precision.cpu_prefers_bf16(TrainConfig(base_filters=16, encoder="mobilenetv2"), str(bf16))
    assert not precision.cpu_prefers_bf16(TrainConfig(model="deeplabv3plus", base_filters=16), str(bf16))
    assert not precision.cpu_prefers_bf16(None, str(bf16))

    monkeypatch.setattr(precision, "gpu_visible", lambda: False)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda cpuinfo="": True)
    assert resolve_precision("auto", wide) == "mixed_bfloat16"
    assert resolve_precision("auto", thin) == "float32"
    assert resolve_precision("float32", wide) == "float32"  # an explicit choice always wins
    monkeypatch.setattr(precision, "gpu_visible", lambda: True)
    assert resolve_precision("auto", wide) == "mixed_float16"


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="precision 'half'"):
        resolve_precision("half")


def test_precision_policy_is_restored_even_after_an_error():
    before = keras.mixed_precision.global_policy().name
    with pytest.raises(RuntimeError):
        with precision_policy("mixed_bfloat16") as name:
            assert name == keras.mixed_precision.global_policy().name == "mixed_bfloat16"
            raise RuntimeError
    assert keras.mixed_precision.global_policy().name == before


def test_mixed_float16_compiles_with_loss_scaling_and_float32_probabilities():
    config = TrainConfig(image_size=32, base_filters=4, depth=2)
    phase = training.training_phases(config)[0]
    with precision_policy("mixed_float16"):
        model = training.build_compiled_model(config, 1, phase)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.output.dtype == "float32"


def test_auto_strategy_on_one_device_is_the_default_strategy():
    if gpu_visible():
        pytest.skip("auto picks mirrored with several GPUs")
    assert strategy_name(get_strategy("auto")) == "default"
    assert strategy_name(get_strategy("default")) == "default"
    with pytest.raises(ConfigError, match="strategy 'gpu'"):
        get_strategy("gpu")
