"""A model.keras of the default architectures loads with plain Keras, in a process where tfseg cannot be imported.

The child process blocks ``import tfseg`` with a meta-path finder (tfseg is installed in this
environment, so ``python -I`` alone would still find it), checks that the import fails, loads
each file with ``keras.models.load_model(path)`` (``compile=True``, ``safe_mode=True``: the defaults)
and predicts; the predictions must equal the training process's.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tfseg.config import TrainConfig
from tfseg.training import BestCheckpoint, build_compiled_model, training_phases

CHILD = textwrap.dedent(
    """
    import json, sys

    class BlockTfseg:
        def find_spec(self, name, path=None, target=None):
            if name == "tfseg" or name.startswith("tfseg."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, BlockTfseg())
    try:
        import tfseg  # noqa: F401
        raise SystemExit("tfseg is importable: the test proves nothing")
    except ModuleNotFoundError:
        pass
    import numpy as np
    import keras

    results = {}
    for name, path in json.loads(sys.argv[1]).items():
        try:
            model = keras.models.load_model(path)
        except Exception as error:  # the test reports which file needed tfseg
            results[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
            continue
        images = np.load(sys.argv[2])
        results[name] = {"prediction": np.asarray(model.predict(images, verbose=0)).tolist(),
                         "compiled": bool(model.compiled)}
    assert "tfseg" not in sys.modules
    print(json.dumps(results))
    """
)


def load_without_tfseg(paths, images, folder):
    """``{name: {"prediction": ...} or {"error": ...}}`` from a child process that cannot import tfseg."""
    images_path = os.path.join(folder, "images.npy")
    np.save(images_path, images)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", "-c", CHILD, json.dumps(paths), images_path],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def checkpoint_of(config: TrainConfig, folder: str, name: str) -> tuple:
    """Build and compile ``config``'s model as ``tfseg train`` does, fit one step and save it with the
    run's :class:`BestCheckpoint`; return ``(path, model)``."""
    keras.utils.set_random_seed(0)
    model = build_compiled_model(config, config.num_classes, training_phases(config)[0])
    size = config.image_size
    images = np.random.RandomState(0).uniform(size=(2, size, size, 3)).astype("float32")
    masks = (images[..., :1] > 0.5).astype("float32")
    if config.num_classes > 1:
        masks = np.random.RandomState(1).randint(0, config.num_classes, size=(2, size, size, 1)).astype("int32")
    path = os.path.join(folder, f"{name}.keras")
    checkpoint = BestCheckpoint(path, monitor="dice")
    model.fit(images, masks, epochs=1, batch_size=2, verbose=0, callbacks=[checkpoint])
    assert os.path.isfile(path)
    return path, model


# name -> TrainConfig settings; only sizes are shrunk (the layers are those of each default)
PLAIN = {
    "unet (tfseg train's default)": dict(image_size=32),
    "segnet simple": dict(model="segnet", variant="simple", image_size=32),
    "unet with an encoder": dict(encoder="mobilenetv2", image_size=32),
    "deeplabv3plus": dict(model="deeplabv3plus", encoder="mobilenetv2", image_size=32),
    "unet, 3 classes, ignore_class": dict(image_size=32, num_classes=3, ignore_class=255, loss="focal"),
}
# Needs tfseg to load: SegNet's pooling indices are tfseg layers, and the bfloat16 batch norm is an option.
NEEDS_TFSEG = {
    "segnet (indices)": dict(model="segnet", image_size=32),
    "unet, batch_norm_layer bfloat16": dict(image_size=32, batch_norm_layer="bfloat16"),
}


@pytest.mark.slow
def test_default_architectures_load_and_predict_with_plain_keras(tmp_path):
    folder = str(tmp_path)
    paths, expected = {}, {}
    images = np.random.RandomState(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    for name, settings in {**PLAIN, **NEEDS_TFSEG}.items():
        path, model = checkpoint_of(TrainConfig(**settings), folder, name.replace(" ", "_").replace(",", ""))
        paths[name] = path
        expected[name] = np.asarray(model.predict(images, verbose=0))
    results = load_without_tfseg(paths, images, folder)
    for name in PLAIN:
        assert "error" not in results[name], f"{name}: {results[name].get('error')}"
        np.testing.assert_allclose(np.asarray(results[name]["prediction"]), expected[name], atol=1e-6,
                                   err_msg=name)
    for name in NEEDS_TFSEG:
        assert "error" in results[name], f"{name} loaded without tfseg: the test should list it as plain"


def test_model_keras_holds_no_compile_state_and_tfseg_compiles_it_back(tmp_path):
    """BestCheckpoint writes the graph and weights only; a run's loss comes back from its config."""
    from tfseg.losses import BCEDiceLoss
    from tfseg.saving import load_keras_model
    from tfseg.training import compile_model

    config = TrainConfig(image_size=32, base_filters=2, depth=2)
    path, model = checkpoint_of(config, str(tmp_path), "model")
    loaded = load_keras_model(path)
    assert not loaded.compiled
    compile_model(loaded, config, 1)
    assert isinstance(loaded.loss, BCEDiceLoss)
    images = np.random.RandomState(2).uniform(size=(2, 32, 32, 3)).astype("float32")
    masks = (images[..., :1] > 0.5).astype("float32")
    np.testing.assert_allclose(loaded.evaluate(images, masks, verbose=0, return_dict=True)["loss"],
                               model.evaluate(images, masks, verbose=0, return_dict=True)["loss"], rtol=1e-5)
