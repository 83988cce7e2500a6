"""The MADS builder on ``dummy_data/`` (4 frames of 2 sequences in the Kaggle archive's nesting)."""

import tensorflow_datasets as tfds

from . import mads_dataset_builder


class MadsDatasetBuilderTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = mads_dataset_builder.Builder
    SPLITS = {"train": 4}


def test_sequence_drops_camera_and_frame_number():
    assert mads_dataset_builder.sequence_of("HipHop_HipHop1_C0_00180") == "HipHop_HipHop1"
    assert mads_dataset_builder.sequence_of("Taichi_S5_C2_00585") == "Taichi_S5"
    assert mads_dataset_builder.sequence_of("walk-0012") == "walk"


if __name__ == "__main__":
    tfds.testing.test_main()
