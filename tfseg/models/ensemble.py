"""An ensemble of segmentation models as one functional Keras model: the average of their probabilities.

``tfseg train --folds K`` trains K models of one architecture; a cross-validated run is
predicted, evaluated and exported as :func:`average_models` of them (:func:`tfseg.saving.load_keras_model`
of the run's folder). Because the ensemble is an ordinary ``keras.Model`` from float32 images
``[B, H, W, C]`` to float32 probabilities, every path of :mod:`tfseg.segment` (resize or sliding
window, flip TTA, threshold) and every export (SavedModel, TFLite, ONNX) take it as they take
one model: the serving graph averages the members inside it. Averaging commutes with the
path's other linear steps (the sliding window's weighted blend, the TTA mean, the bilinear
restore), so the ensemble's probabilities are the average of each member's own whole-image
probabilities.

keras.layers/keras.ops only: it runs on every Keras 3 backend.

Example:
    >>> import tfseg.models
    >>> members = [tfseg.models.build_model("unet", image_size=16, base_filters=2, depth=1) for _ in range(2)]
    >>> ensemble = average_models(members)
    >>> ensemble.name, ensemble.input.shape, ensemble.output.shape
    ('ensemble_of_2_unet', (None, 16, 16, 3), (None, 16, 16, 1))
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras


def average_models(models: Sequence[keras.Model], name: Optional[str] = None) -> keras.Model:
    """One functional model whose output is the mean of ``models``' probabilities (float32).

    Args:
        models: two or more models with one image input and one probabilities output, all of the
            same input shape and output channels (e.g. the folds of a cross-validation). They
            are shared, not copied: the ensemble's weights are theirs. Each is renamed
            ``member_<i>`` (1-based) inside the ensemble, as nested layers need unique names.
        name: the ensemble's name (default ``ensemble_of_<n>_<first model's name>``).

    Raises:
        ValueError: fewer than two models, or models of different input shapes or class counts.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"an ensemble needs two or more models, got {len(models)}")
    shapes = {tuple(model.inputs[0].shape[1:]) for model in models}
    classes = {int(model.outputs[0].shape[-1]) for model in models}
    if len(shapes) != 1 or len(classes) != 1:
        raise ValueError(f"the models of an ensemble must share input shape and classes; found inputs "
                         f"{sorted(shapes, key=str)} and classes {sorted(classes)}")
    first = models[0].name
    images = keras.Input(shape=shapes.pop(), name="images", dtype="float32")
    outputs = []
    for i, model in enumerate(models, start=1):
        model.name = f"member_{i}"
        outputs.append(keras.ops.cast(model(images), "float32"))
    probabilities = keras.layers.Average(name="probabilities", dtype="float32")(outputs)
    return keras.Model(images, probabilities, name=name or f"ensemble_of_{len(models)}_{first}")
