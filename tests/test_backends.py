"""Backend portability (issue 11): models, layers, losses and metrics are Keras 3 only.

Each backend runs in its own subprocess (``KERAS_BACKEND`` is read once, at ``import keras``):
a model trained and saved under JAX loads and predicts the same under TensorFlow and the
reverse; Dice/IoU agree; and the Keras-only modules never import TensorFlow.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="jax is not installed (pip install 'jax[cpu]'); the JAX backend cannot be tested",
)

MODELS = {"unet": {}, "segnet": {"variant": "indices"}}

# Runs in a fresh interpreter: `python -c WORKER ROLE FOLDER [OTHER_FOLDER]`.
WORKER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import keras
    from tfseg.losses import BCEDiceLoss
    from tfseg.metrics import Dice, IoU
    from tfseg.models import build_model

    role, folder = sys.argv[1], sys.argv[2]
    models = json.loads(os.environ["TFSEG_TEST_MODELS"])
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(4, 32, 32, 3)).astype("float32")
    masks = (images[..., :1] > 0.5).astype("float32")
    probe = np.random.RandomState(1).uniform(size=(2, 32, 32, 3)).astype("float32")

    def metric_values():
        y_true = (np.random.RandomState(2).uniform(size=(3, 16, 16, 1)) > 0.6).astype("float32")
        y_prob = np.random.RandomState(3).uniform(size=(3, 16, 16, 1)).astype("float32")
        ids = np.random.RandomState(4).randint(0, 3, size=(3, 16, 16, 1)).astype("int32")
        softmax = np.random.RandomState(5).dirichlet([1, 1, 1], size=(3, 16, 16)).astype("float32")
        values = {}
        for name, metric, truth, pred in [
            ("dice", Dice(), y_true, y_prob),
            ("iou", IoU(), y_true, y_prob),
            ("dice_per_image", Dice(per_image=True), y_true, y_prob),
            ("dice_3_classes", Dice(num_classes=3), ids, softmax),
            ("iou_3_classes", IoU(num_classes=3), ids, softmax),
        ]:
            metric.update_state(truth, pred)
            values[name] = float(metric.result())
        values["bce_dice_loss"] = float(BCEDiceLoss()(y_true, y_prob))
        return values

    results = {"backend": keras.backend.backend()}
    if role == "train":
        keras.utils.set_random_seed(0)
        for name, options in models.items():
            model = build_model(name, image_size=32, depth=2, base_filters=4, **options)
            model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BCEDiceLoss(), metrics=[Dice()])
            history = model.fit(images, masks, batch_size=2, epochs=1, verbose=0)  # 2 steps
            results[name] = history.history
            # the Dice metric inside evaluate(), and the same Dice counted in NumPy
            results[name]["evaluated_dice"] = model.evaluate(images, masks, batch_size=2, verbose=0,
                                                             return_dict=True)["dice"]
            hard = np.asarray(model.predict(images, verbose=0)) >= 0.5
            truth = masks > 0.5
            tp, fp, fn = (float(np.sum(a)) for a in (hard & truth, hard & ~truth, ~hard & truth))
            results[name]["numpy_dice"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
            model.save(os.path.join(folder, name + ".keras"))
            np.save(os.path.join(folder, name + ".npy"), model.predict(probe, verbose=0))
        results["metrics"] = metric_values()
    else:  # load the other backend's files
        for name in models:
            model = keras.models.load_model(os.path.join(sys.argv[3], name + ".keras"), safe_mode=True)
            np.save(os.path.join(folder, "loaded_" + name + ".npy"), model.predict(probe, verbose=0))
    with open(os.path.join(folder, role + ".json"), "w") as f:
        json.dump(results, f)
    """
)


def run_python(code, backend, *args, timeout=300):
    """stdout of ``python -c code args`` with ``KERAS_BACKEND=backend``; fails the test on error."""
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="2",
        JAX_PLATFORMS="cpu",
        TFSEG_TEST_MODELS=json.dumps(MODELS),
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, f"{backend} subprocess failed:\n{done.stderr[-3000:]}"
    return done.stdout


@needs_jax
@pytest.mark.slow
def test_keras_files_move_between_jax_and_tensorflow(tmp_path):
    tf_dir, jax_dir = tmp_path / "tensorflow", tmp_path / "jax"
    tf_dir.mkdir()
    jax_dir.mkdir()
    run_python(WORKER, "tensorflow", "train", tf_dir)
    run_python(WORKER, "jax", "train", jax_dir)
    run_python(WORKER, "jax", "load", jax_dir, tf_dir)
    run_python(WORKER, "tensorflow", "load", tf_dir, jax_dir)

    trained = {d.name: json.loads((d / "train.json").read_text()) for d in (tf_dir, jax_dir)}
    assert trained["tensorflow"]["backend"] == "tensorflow" and trained["jax"]["backend"] == "jax"
    for name in MODELS:
        for backend in ("tensorflow", "jax"):
            history = trained[backend][name]
            assert np.isfinite(history["loss"]).all()
            assert history["evaluated_dice"] == pytest.approx(history["numpy_dice"], abs=1e-5), backend
        # saved under one backend, loaded under the other: same predictions
        np.testing.assert_allclose(np.load(jax_dir / f"loaded_{name}.npy"), np.load(tf_dir / f"{name}.npy"), atol=1e-5)
        np.testing.assert_allclose(np.load(tf_dir / f"loaded_{name}.npy"), np.load(jax_dir / f"{name}.npy"), atol=1e-5)

    tf_metrics, jax_metrics = trained["tensorflow"]["metrics"], trained["jax"]["metrics"]
    assert tf_metrics.keys() == jax_metrics.keys()
    for name in tf_metrics:
        assert 0.0 < tf_metrics[name] < 2.0
        assert jax_metrics[name] == pytest.approx(tf_metrics[name], rel=1e-6, abs=1e-6), name


IMPORTS_WITHOUT_TENSORFLOW = textwrap.dedent(
    """
    import importlib, json, sys
    importers = []
    for name in sys.argv[1:]:
        importlib.import_module(name)
        if "tensorflow" in sys.modules:
            importers.append(name)
            break
    print(json.dumps(importers))
    """
)


@needs_jax
def test_keras_only_modules_do_not_import_tensorflow():
    # With the TensorFlow backend keras itself imports TF, so check under JAX.
    modules = ["tfseg", "tfseg.layers", "tfseg.models", "tfseg.models.ensemble", "tfseg.losses", "tfseg.metrics",
               "tfseg.tiling"]
    importers = json.loads(run_python(IMPORTS_WITHOUT_TENSORFLOW, "jax", *modules).strip().splitlines()[-1])
    assert importers == [], f"importing {importers[0]} imported tensorflow"


def test_import_tfseg_leaves_tensorflow_only_parts_unloaded():
    # Under the TF backend keras itself imports TF; what must stay lazy are
    # tfseg's own TensorFlow modules (data pipeline, training, export).
    script = textwrap.dedent(
        """
        import json, sys
        import tfseg
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[:2] in (
            ["tfseg", "data"], ["tfseg", "training"], ["tfseg", "export"], ["tfseg", "inference"]))))
        """
    )
    loaded = json.loads(run_python(script, "tensorflow").strip().splitlines()[-1])
    assert loaded == [], f"import tfseg loaded {loaded}"


def test_keras_file_loads_after_import_tfseg_without_custom_objects(tmp_path):
    # API.md: every custom object is registered, so load_model needs no custom_objects.
    script = textwrap.dedent(
        """
        import sys
        import keras
        import tfseg
        from tfseg.losses import BCEDiceLoss
        from tfseg.metrics import Dice
        model = tfseg.models.build_model("segnet", 32, base_filters=4, depth=2)
        model.compile(loss=BCEDiceLoss(), metrics=[Dice()])
        model.save(sys.argv[1])
        """
    )
    path = str(tmp_path / "m.keras")
    run_python(script, "tensorflow", path)
    loader = textwrap.dedent(
        """
        import sys
        import keras
        import tfseg  # registers tfseg's layers, losses and metrics
        model = keras.models.load_model(sys.argv[1], safe_mode=True)
        print(type(model.loss).__name__)
        """
    )
    assert run_python(loader, "tensorflow", path).strip().splitlines()[-1] == "BCEDiceLoss"


ENSEMBLE = textwrap.dedent(
    """
    import numpy as np
    import keras
    from tfseg.models import build_model
    from tfseg.models.ensemble import average_models

    members = [build_model("unet", image_size=16, base_filters=2, depth=1) for _ in range(3)]
    images = np.random.RandomState(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    expected = np.mean([np.asarray(m.predict(images, verbose=0)) for m in members], axis=0)
    got = np.asarray(average_models(members).predict(images, verbose=0))
    print(keras.backend.backend(), float(np.abs(got - expected).max()))
    """
)


@needs_jax
@pytest.mark.slow
def test_the_fold_ensemble_averages_under_jax():
    backend, diff = run_python(ENSEMBLE, "jax").strip().splitlines()[-1].split()
    assert backend == "jax" and float(diff) < 1e-6
