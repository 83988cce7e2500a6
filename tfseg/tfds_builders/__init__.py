"""TFDS dataset builders shipped with tfseg: ``ph2`` and ``mads`` (manual downloads).

Each folder is a TFDS dataset folder (``<name>_dataset_builder.py``, ``README.md``,
``CITATIONS.bib``, ``dummy_data/`` and a ``tfds.testing.DatasetBuilderTestCase``).
They live inside the package so that an installed tfseg (not only a checkout) finds
them: ``tfds:ph2`` / ``tfds:mads`` load the builder from here without registering it
with TFDS (see :mod:`tfseg.data.tfds_source`). Importing this package imports no builder.
"""
