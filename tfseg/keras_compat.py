"""Workarounds for Keras behaviour that has no public switch, each in one place.

Each entry names the Keras version it was checked against and the upstream
issue; ``tests/test_keras_compat.py`` fails loudly when the Keras code a
workaround relies on changes, so that it is looked at again on every upgrade.

==========================  ======================  ============================================
workaround                  checked against         why
==========================  ======================  ============================================
:func:`with_nested_reduce`  Keras 3.15, TF 2.21     keras-team/keras#20585: the TF trainer
                                                    reduces an ``(x, y)`` nest with
                                                    ``strategy.reduce`` before a symbolic build,
                                                    which ``MultiWorkerMirroredStrategy`` refuses
==========================  ======================  ============================================

Everything else in tfseg uses public Keras API only (callbacks keep their state in
public attributes; a resumed run passes ``initial_epoch`` to ``fit``).
"""

from __future__ import annotations

CHECKED_KERAS = "3.15"  # also setup.cfg's lower bound, with TensorFlow 2.21


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
