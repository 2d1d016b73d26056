"""Input pipelines."""

from mtl_keras.data.frames import from_pandas
from mtl_keras.data.pipeline import from_arrays
from mtl_keras.data.sampling import SAMPLERS, TaskSampler, sample_tasks
from mtl_keras.data.tfds_pipeline import from_tfds

__all__ = ["SAMPLERS", "TaskSampler", "from_arrays", "from_pandas", "from_tfds", "sample_tasks"]
