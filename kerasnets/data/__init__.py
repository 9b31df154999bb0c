"""Data sets, preprocessing and the two input pipelines (tf.data, PyDataset).

Layout: :mod:`~kerasnets.data.specs` (one declarative spec per data set),
:mod:`~kerasnets.data.datasets` (``load_dataset``), one reader module per format
(:mod:`~kerasnets.data.idx`, :mod:`~kerasnets.data.cifar`,
:mod:`~kerasnets.data.folders` with :mod:`~kerasnets.data.image_lists` for CSV
lists, :mod:`~kerasnets.data.synthetic`), :mod:`~kerasnets.data.images` (decoding one
image file), :mod:`~kerasnets.data.streamed` (image folders decoded per batch),
:mod:`~kerasnets.data.export` (arrays written as an image folder),
:mod:`~kerasnets.data.locate` (search order, not-found message, download),
:mod:`~kerasnets.data.splits`, :mod:`~kerasnets.data.preprocess` and
:mod:`~kerasnets.data.pipelines`.
"""

from kerasnets.data.datasets import Dataset, load_dataset
from kerasnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from kerasnets.data.pipelines import PIPELINES, ArrayDataset, make_pipeline, tf_dataset
from kerasnets.data.preprocess import Preprocessing, Preprocessor, channel_statistics
from kerasnets.data.specs import DATASETS

__all__ = ["DATASETS", "PIPELINES", "ArrayDataset", "CorruptDatasetError", "Dataset",
           "DatasetNotFoundError", "Preprocessing", "Preprocessor", "channel_statistics",
           "load_dataset", "make_pipeline", "tf_dataset"]
