"""Data sets, preprocessing and the two input pipelines (tf.data, PyDataset)."""

from kerasnets.data.datasets import (
    DATASETS, CorruptDatasetError, Dataset, DatasetNotFoundError, load_dataset)
from kerasnets.data.pipelines import PIPELINES, ArrayDataset, make_pipeline, tf_dataset
from kerasnets.data.preprocess import Preprocessing, Preprocessor, channel_statistics

__all__ = ["DATASETS", "PIPELINES", "ArrayDataset", "CorruptDatasetError", "Dataset",
           "DatasetNotFoundError", "Preprocessing", "Preprocessor", "channel_statistics",
           "load_dataset", "make_pipeline", "tf_dataset"]
