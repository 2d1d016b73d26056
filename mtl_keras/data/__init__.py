"""Input pipelines."""

from mtl_keras.data.files import (
    adapt_encoder,
    from_csv,
    from_parquet,
    from_tfrecords,
    verify_tfrecords,
    write_tfrecords,
)
from mtl_keras.data.frames import from_pandas
from mtl_keras.data.pipeline import from_arrays
from mtl_keras.data.sampling import SAMPLERS, TaskSampler, sample_tasks
from mtl_keras.data.tfds_pipeline import from_tfds

__all__ = [
    "SAMPLERS",
    "TaskSampler",
    "adapt_encoder",
    "from_arrays",
    "from_csv",
    "from_pandas",
    "from_parquet",
    "from_tfds",
    "from_tfrecords",
    "sample_tasks",
    "verify_tfrecords",
    "write_tfrecords",
]
