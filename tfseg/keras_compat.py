"""Where tfseg relies on Keras behaviour that has no public switch or documentation, each in one place.

Each entry names the Keras version it was checked against and why it is needed;
``tests/test_keras_compat.py`` fails loudly when the Keras code an entry relies on changes,
so that it is looked at again on every upgrade (``setup.cfg`` bounds Keras below 4).

=================================  ======================  ============================================
what                               checked against         why
=================================  ======================  ============================================
:func:`with_nested_reduce`         Keras 3.15, TF 2.21     keras-team/keras#20585: the TF trainer
                                                           reduces an ``(x, y)`` nest with
                                                           ``strategy.reduce`` before a symbolic build,
                                                           which ``MultiWorkerMirroredStrategy`` refuses
:func:`register_compile_names`     Keras 3.15              ``keras.losses.get``/``keras.metrics.get``
                                                           resolve a string only in their module's
                                                           ``ALL_OBJECTS_DICT`` (not in
                                                           ``keras.saving.get_custom_objects()``), so
                                                           ``compile(loss="bce_dice")`` needs tfseg's
                                                           names there
``CALLBACK_STATE`` (training       Keras 3.15              the resume state of ``EarlyStopping`` and
callbacks)                                                 ``ReduceLROnPlateau`` is their attributes
                                                           ``best``, ``wait``, ``best_epoch``,
                                                           ``stopped_epoch``, ``cooldown_counter``,
                                                           ``best_weights`` (public names, not documented),
                                                           reset by their ``on_train_begin``
``keras_cache_dir``                Keras 3.15              where ``keras.utils.get_file`` caches the
                                                           ImageNet weights (Keras' home, read from
                                                           ``KERAS_HOME`` when Keras is imported;
                                                           ``/tmp/.keras`` when not writable), to name
                                                           the file in the offline error
=================================  ======================  ============================================

Everything else in tfseg uses public Keras API only (a loss's dtype is its public ``dtype``; a
resumed run passes ``initial_epoch`` to ``fit``).

This module imports Keras only (never TensorFlow at import time), so losses and metrics can use it
under every backend.
"""

from __future__ import annotations

CHECKED_KERAS = "3.15"  # also setup.cfg's lower bound, with TensorFlow 2.21


#: Keras' module -> the table its ``get`` looks strings up in (see :func:`register_compile_names`).
_COMPILE_TABLES = {"losses": "keras.src.losses", "metrics": "keras.src.metrics"}


def register_compile_names(kind: str, names) -> None:
    """Make each ``{string: class}`` of ``names`` a string ``model.compile`` accepts for ``kind``
    (``"losses"`` or ``"metrics"``).

    Keras 3 resolves ``compile(loss="...")`` with ``keras.losses.get``, which reads the string in
    ``keras.src.losses.ALL_OBJECTS_DICT`` only (metrics likewise); a class found there is
    instantiated with no arguments, so tfseg's losses and metrics infer their class count from the
    predictions. A name Keras already has (``"dice"``, ``"bce"``, ``"tversky"``) then means tfseg's.
    """
    import importlib

    importlib.import_module(_COMPILE_TABLES[kind]).ALL_OBJECTS_DICT.update(names)


def keras_cache_dir(subdir: str) -> str:
    """The folder ``keras.utils.get_file(..., cache_subdir=subdir)`` stores files in.

    Keras' home (``$KERAS_HOME`` as it was when Keras was imported, else ``~/.keras``; no public
    function returns it), or ``/tmp/.keras`` (the temporary folder elsewhere) when that is not
    writable: ``get_file``'s own rule.
    """
    import os
    import tempfile

    from keras.src.backend.config import keras_home

    home = os.path.expanduser(keras_home())
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return os.path.join(home, subdir)


def with_nested_reduce(strategy):
    """``strategy`` whose ``reduce`` of a nest (an ``(images, masks)`` batch) returns the local values.

    Keras 3.15's TF trainer starts every ``fit``/``evaluate`` under a strategy by reducing
    one ``(x, y)`` batch with ``strategy.reduce("MEAN", batch)`` only to read its shapes and
    dtypes for a symbolic build. With several workers ``MultiWorkerMirroredStrategy.reduce``
    refuses nests ("Attempt to convert a value (PerReplica...)", keras-team/keras#20585), and
    a real all-reduce would fail anyway when the workers' last batches differ in size. TF
    never reduces nests itself, so a nest is answered with this worker's first local value
    (right shapes and dtypes, no collective). The same trainer averages each step's scalar
    logs (loss, Dice) with ``reduce("MEAN", v, axis=0)``, which TF rejects for a scalar
    ("Invalid reduction dimension 0"): a scalar is averaged across replicas (``axis=None``).
    """
    import tensorflow as tf

    reduce = strategy.reduce

    def nested_reduce(reduce_op, value, axis=None):
        if tf.nest.is_nested(value):
            return tf.nest.map_structure(lambda leaf: strategy.experimental_local_results(leaf)[0], value)
        if axis is not None and strategy.experimental_local_results(value)[0].shape.rank == 0:
            axis = None
        return reduce(reduce_op, value, axis=axis)

    strategy.reduce = nested_reduce
    return strategy
