"""Chief-only files under MultiWorkerMirroredStrategy.

Every worker runs the same code, saves included (a save may read mirrored
or on-read variables in lockstep), but only the chief's files are kept: the
other workers write to private temporary directories that are removed
(TensorFlow's recommendation). `TaskTensorBoard` does this itself; these
wrap the checkpoint callback and the SavedModel export.
"""

from __future__ import annotations

import os
from typing import Any

import keras

from mtl_keras.distribute.cluster import remove_if_temporary, write_path


@keras.saving.register_keras_serializable(package="mtl_keras")
class ChiefModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` whose files only the chief keeps.

    Args:
        filepath: as for `ModelCheckpoint` (on the chief).
        **kwargs: passed to `ModelCheckpoint`.

    Example:
    >>> cb = ChiefModelCheckpoint("ckpt/model-{epoch}.keras")
    """

    def __init__(self, filepath: str, **kwargs: Any) -> None:
        super().__init__(filepath, **kwargs)
        self._chief_filepath = str(filepath)
        self._kwargs = kwargs

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        directory = os.path.dirname(self._chief_filepath) or "."
        written = write_path(directory, self.model.distribute_strategy)
        self._written_dir = written
        self._requested_dir = directory
        self.filepath = os.path.join(written, os.path.basename(self._chief_filepath))
        super().on_train_begin(logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_end(logs)
        remove_if_temporary(self._written_dir, self._requested_dir)

    def get_config(self) -> dict[str, Any]:
        return {"filepath": self._chief_filepath, **self._kwargs}


def export_saved_model(model: keras.Model, base_dir: str, *args: Any, **kwargs: Any) -> str:
    """`mtl_keras.export.export_saved_model` run on every worker, kept on the chief.

    Returns the chief's export path (on other workers: the path the chief
    writes, their own copy having been removed).

    Args:
        model: the trained model.
        base_dir: the export base directory (on the chief).
        *args, **kwargs: passed to `mtl_keras.export.export_saved_model`.

    Example:
    >>> import tempfile
    >>> base = tempfile.mkdtemp()
    >>> path = export_saved_model(model, base)  # no MWMS: this process is the chief
    >>> os.path.dirname(path) == base, os.path.basename(path)
    (True, '1')
    """
    from mtl_keras.export import export_saved_model as export

    target = write_path(str(base_dir), model.distribute_strategy)
    path = export(model, target, *args, **kwargs)
    if target != str(base_dir):
        remove_if_temporary(target, str(base_dir))
        return os.path.join(str(base_dir), os.path.basename(path))
    return path
