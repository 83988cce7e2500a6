"""The PH2 builder on ``dummy_data/`` (3 cases in the real archive layout)."""

import tensorflow_datasets as tfds

from . import ph2_dataset_builder


class Ph2DatasetBuilderTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = ph2_dataset_builder.Builder
    SPLITS = {"train": 3}


def test_parse_diagnoses_reads_the_clinical_diagnosis_column():
    table = ("||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry ||\n"
             "|| IMD002 ||                        ||                  1 ||         0 ||\n"
             "|| IMD003 ||               Melanoma ||                  2 ||         2 ||\n")
    assert ph2_dataset_builder.parse_diagnoses(table) == {"IMD002": 1, "IMD003": 2}


if __name__ == "__main__":
    tfds.testing.test_main()
