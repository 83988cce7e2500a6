"""TFDS dataset builders shipped with tfseg: ``ph2`` and ``mads`` (manual downloads).

Each folder is a TFDS dataset folder (``<name>_dataset_builder.py``, ``README.md``,
``CITATIONS.bib``, ``dummy_data/`` and a ``tfds.testing.DatasetBuilderTestCase``).
They live inside the package so that an installed tfseg (not only a checkout) finds
them: ``tfds:ph2`` / ``tfds:mads`` load the builder from here without registering it
with TFDS (see :mod:`tfseg.data.kinds.tfds`). Importing this package imports no builder.
The builders read pixels and masks by tfseg's own rules (:mod:`tfseg.data.filepixels`,
:mod:`tfseg.masks`), so ``tfds:ph2`` holds what ``ph2:PATH`` reads. Where to get each data
set, its licence and layout: ``datasets/`` at the top of the repository.
"""
