"""TensorBoard callback that groups the per-task logs into one section per task."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from mtl_keras.callbacks import monitoring
from mtl_keras.distribute import cluster
from mtl_keras.tasks import Task, validate_task_name


def split_task_key(key: str, task_names: Sequence[str]) -> tuple[str, str] | None:
    """Splits a log key `<task>_<metric>` into `(task, metric)`.

    The longest matching task name wins, so tasks `a` and `a_b` do not steal
    each other's keys. Returns None for keys that belong to no task (`loss`,
    `learning_rate`, ...).

    Example:
    >>> split_task_key("click_auc", ["click", "dwell"])
    ('click', 'auc')
    >>> split_task_key("a_b_loss", ["a", "a_b"])
    ('a_b', 'loss')
    >>> split_task_key("loss", ["click"]) is None
    True
    """
    best = None
    for name in task_names:
        prefix = name + "_"
        if key.startswith(prefix) and len(key) > len(prefix):
            if best is None or len(name) > len(best):
                best = name
    if best is None:
        return None
    return best, key[len(best) + 1 :]


class TaskTensorBoard(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` plus one TensorBoard section per task.

    Everything `keras.callbacks.TensorBoard` writes is unchanged (`epoch_loss`,
    `epoch_click_auc`, `batch_*`, graphs, histograms, ...). In addition, every
    log of a task (`<task>_loss`, `<task>_weight`, `<task>_<metric>` as logged
    by `MultiTaskModel`) is written again under a tag whose first path
    component is the task, which TensorBoard uses to group charts:

    - per epoch: `<task>/<metric>` (e.g. `click/loss`, `click/weight`,
      `click/auc`), x-axis = epoch. Training values go to the `train` run and
      validation values (`val_<task>_<metric>`) to the `validation` run under
      the *same* tag, so each chart overlays train and validation, exactly like
      Keras's own `epoch_*` charts.
    - per step, when `update_freq` is `"batch"` or an int N:
      `<task>/batch_<metric>` in the `train` run, x-axis = global training
      step, every N steps (the same cadence as Keras's `batch_*` scalars).
      Values are Keras's running averages over the current epoch.

    With `steps_per_execution` K (`MultiTaskModel.compile` defaults it to
    32), Keras calls batch callbacks once per K steps: per-step scalars and
    gradient similarity are then written at the end of each execution that
    crossed a multiple of their frequency, at that execution's last global
    step (every multiple when K divides the frequency). Batch ends that log
    nothing make no summary calls, and the callback is `async_safe` (no
    per-step timing or profiling) for backends that dispatch batch ends on a
    thread.

    One fix to Keras's own logging: with an int `update_freq`,
    `keras.callbacks.TensorBoard` drops all epoch summaries (`epoch_*`,
    histograms) of an epoch whose last step is not a multiple of
    `update_freq`; this callback always writes them.

    Where to look in TensorBoard: run `tensorboard --logdir <log_dir>` and
    open the "Scalars" (or "Time Series") tab. There is one collapsible
    section per task, named after it (e.g. "click", "dwell"); inside, one chart
    per metric with two lines, `train` and `validation` (select runs in the
    left panel). The `<task>/batch_*` charts in the same section show the
    training curves per step. Keras's own scalars stay in the "epoch_*" and
    "batch_*" sections, which mix all tasks together.

    Args:
        log_dir, histogram_freq, write_graph, write_images,
        write_steps_per_second, update_freq, profile_batch, embeddings_freq,
        embeddings_metadata: as in `keras.callbacks.TensorBoard`.
        tasks: optional task names (or `Task` specs) to group; by default the
            model's tasks (`MultiTaskModel.task_names`), or the keys of a
            functional model's dict outputs.
        gradient_similarity_freq: every N training steps (0 = never), compute
            the task-to-task cosine similarity of the per-task gradients of
            the shared parameters (`MultiTaskModel.variable_groups()`) on the
            fixed batch `similarity_data`, in inference mode and outside the
            train step. Written to the `train` run at the global step as
            scalars `gradient_similarity/<a>_vs_<b>` (task order) and an
            image `gradient_similarity/heatmap` (Images tab; rows/columns in
            task order, blue -1, white 0, red +1, grey = no labelled row).
        similarity_data: the fixed batch, `(x, y)`, `(x, y, sample_weight)`
            or a `tf.data.Dataset` (its first batch is used). Its `x` also
            feeds gate utilisation.
        gate_data: inputs for gate utilisation (default: `similarity_data`'s
            x). When the model has `mtl_keras.layers.Gate` layers (MMoE, PLE),
            the mean gate weight of every expert is written at each epoch end
            as `gates/<gate key>/expert_<i>`; otherwise nothing is written.
            Per-task fusion weights of `builders.fusion` models are written
            the same way as `fusion/<task>/<modality>`.

    Example:
    >>> import tempfile
    >>> import keras, numpy as np
    >>> from mtl_keras import Binary, Regression, builders
    >>> from mtl_keras.callbacks import TaskTensorBoard
    >>> model = builders.shared_bottom(
    ...     keras.Input((4,)), [Binary("click"), Regression("dwell")],
    ...     trunk_units=(8,), tower_units=())
    >>> model.compile("adam")
    >>> x = np.random.rand(32, 4).astype("float32")
    >>> y = {"click": (x[:, 0] > 0.5).astype("float32"), "dwell": x[:, 1]}
    >>> tb = TaskTensorBoard(tempfile.mkdtemp(), update_freq="batch")
    >>> _ = model.fit(x, y, validation_split=0.25, epochs=2, callbacks=[tb], verbose=0)
    """

    def __init__(
        self,
        log_dir: str = "logs",
        histogram_freq: int = 0,
        write_graph: bool = True,
        write_images: bool = False,
        write_steps_per_second: bool = False,
        update_freq: str | int = "epoch",
        profile_batch: int | Sequence[int] | str = 0,
        embeddings_freq: int = 0,
        embeddings_metadata: Mapping[str, str] | str | None = None,
        tasks: Sequence[str | Task] | None = None,
        gradient_similarity_freq: int = 0,
        similarity_data: Any = None,
        gate_data: Any = None,
    ) -> None:
        if update_freq not in ("epoch", "batch") and (
            isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1
        ):
            raise ValueError(
                f'`update_freq` must be "epoch", "batch" or a positive int, got {update_freq!r}.'
            )
        super().__init__(
            log_dir=log_dir,
            histogram_freq=histogram_freq,
            write_graph=write_graph,
            write_images=write_images,
            write_steps_per_second=write_steps_per_second,
            update_freq=update_freq,
            profile_batch=profile_batch,
            embeddings_freq=embeddings_freq,
            embeddings_metadata=embeddings_metadata,
        )
        # TensorBoard turns "batch" into 1; keep what was passed for get_config.
        self._update_freq_arg = update_freq
        self._profile_batch_arg = profile_batch
        self.tasks = None if tasks is None else _task_names(tasks)
        self._task_names: list[str] = list(self.tasks or [])
        if (
            isinstance(gradient_similarity_freq, bool)
            or not isinstance(gradient_similarity_freq, int)
            or gradient_similarity_freq < 0
        ):
            raise ValueError(
                "`gradient_similarity_freq` must be a non-negative int (steps), got "
                f"{gradient_similarity_freq!r}."
            )
        if gradient_similarity_freq and similarity_data is None:
            raise ValueError(
                "`gradient_similarity_freq` needs `similarity_data`, a fixed (x, y) batch."
            )
        self.gradient_similarity_freq = gradient_similarity_freq
        self.similarity_data = similarity_data
        self.gate_data = gate_data
        # Unpacked once so every probe sees exactly the same rows.
        self._similarity_batch = (
            None if similarity_data is None else monitoring.unpack_batch(similarity_data)
        )
        self._gate_model: Any = None
        self._fusion_model: Any = None

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (TensorBoard's plus `tasks`)."""
        return {
            "log_dir": getattr(self, "_chief_log_dir", self.log_dir),
            "histogram_freq": self.histogram_freq,
            "write_graph": self.write_graph,
            "write_images": self.write_images,
            "write_steps_per_second": self.write_steps_per_second,
            "update_freq": self._update_freq_arg,
            "profile_batch": self._profile_batch_arg,
            "embeddings_freq": self.embeddings_freq,
            "embeddings_metadata": self.embeddings_metadata,
            "tasks": None if self.tasks is None else list(self.tasks),
            "gradient_similarity_freq": self.gradient_similarity_freq,
            "similarity_data": self.similarity_data,
            "gate_data": self.gate_data,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TaskTensorBoard:
        return cls(**config)

    # --------------------------------------------------------------- model
    def set_model(self, model: keras.Model) -> None:
        # Under MultiWorkerMirroredStrategy only the chief writes to log_dir.
        self._chief_log_dir = getattr(self, "_chief_log_dir", self.log_dir)
        self.log_dir = cluster.write_path(self._chief_log_dir, model.distribute_strategy)
        super().set_model(model)
        self._gate_model = monitoring.gate_weights_model(model)
        self._fusion_model = _fusion_weights_model(model)
        if self.tasks is not None:
            self._task_names = list(self.tasks)
            return
        names = getattr(model, "task_names", None)
        if names is None:
            outputs = getattr(model, "_outputs_struct", None)
            names = list(outputs) if isinstance(outputs, dict) else list(model.output_names or [])
        self._task_names = list(names)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_end(logs)
        self._in_fit = False
        cluster.remove_if_temporary(self.log_dir, self._chief_log_dir)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        super().on_test_end(logs)
        # A lone `evaluate` on a non-chief worker: no on_train_end will
        # remove its private directory, so do it here.
        temporary = os.path.normpath(self.log_dir) != os.path.normpath(self._chief_log_dir)
        if temporary and not getattr(self, "_in_fit", False):
            self._close_writers()
            self._writers = {}
            cluster.remove_if_temporary(self.log_dir, self._chief_log_dir)

    def _task_scalars(
        self, logs: Mapping[str, Any] | None, validation: bool, tag_prefix: str = ""
    ) -> Iterator[tuple[str, Any]]:
        """(`<task>/<tag_prefix><metric>`, value) for the task logs of one split."""
        for key, value in (logs or {}).items():
            if key.startswith("val_") != validation:
                continue
            split = split_task_key(key[4:] if validation else key, self._task_names)
            # Non-scalar metrics (e.g. per-class F1) cannot be scalar summaries.
            if split is None or np.ndim(value) != 0:
                continue
            task, metric = split
            yield f"{task}/{tag_prefix}{metric}", value

    # ----------------------------------------------------------- callbacks
    @property
    def async_safe(self) -> bool:
        """Batch-end work may run on Keras's callback thread (so `fit` does not
        wait for it each step): it writes through explicit writers at explicit
        steps. Per-step timing and profiling need the main thread."""
        return not self.write_steps_per_second and not self._should_trace

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self._in_fit = True  # validation's on_test_end keeps the directory
        self._steps_done = 0  # optimizer steps of this fit (callbacks may skip some)
        self._epoch_base = 0
        self._similarity_step = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        self._epoch_base = self._steps_done

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Main thread, weights as after the previous execution's last step.
        self._steps_done = self._epoch_base + batch
        self._maybe_write_gradient_similarity()
        super().on_train_batch_begin(batch, logs)

    def _execution_steps(self, batch: int) -> tuple[int, int]:
        """(global step before, global step after) the execution ending at `batch`.

        With `steps_per_execution` K, Keras calls the batch hooks once per K
        steps with `batch` = the index of the execution's last step (the
        epoch's last execution may run fewer)."""
        k = int(getattr(self.model, "steps_per_execution", 1) or 1)
        steps = (self.params or {}).get("steps")
        end = batch + 1 if not steps else min(batch + 1, steps)
        return self._epoch_base + max(0, batch + 1 - k), self._epoch_base + end

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Graph, steps/second and profiling from Keras; the scalars below.
        super().on_train_batch_end(batch, None)
        if self.update_freq == "epoch" or not isinstance(logs, dict):
            return
        before, after = self._execution_steps(batch)
        # Write when this execution crossed a multiple of update_freq (every
        # multiple when steps_per_execution divides it), at its last step.
        if after // self.update_freq == before // self.update_freq:
            return
        with self.summary.record_if(True), self._train_writer.as_default():
            for name, value in logs.items():
                if np.ndim(value) == 0:
                    self.summary.scalar(f"batch_{name}", value, step=after)
            for tag, value in self._task_scalars(logs, validation=False, tag_prefix="batch_"):
                self.summary.scalar(tag, value, step=after)

    def _maybe_write_gradient_similarity(self) -> None:
        freq, step = self.gradient_similarity_freq, self._steps_done
        if freq and step // freq > self._similarity_step // freq:
            self._similarity_step = step
            self._write_gradient_similarity(step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # With an int `update_freq`, Keras's per-step record_if(step % N == 0)
        # is still active at epoch end, so plain TensorBoard silently drops
        # every epoch summary when the epoch's last step is not a multiple of
        # N (tensorflow/tensorflow#49109). Epoch summaries must not depend on it.
        steps = (self.params or {}).get("steps")
        if steps:
            self._steps_done = self._epoch_base + steps
            self._maybe_write_gradient_similarity()
        with self.summary.record_if(True):
            super().on_epoch_end(epoch, logs)
            for validation in (False, True):
                scalars = list(self._task_scalars(logs, validation=validation))
                if not scalars:
                    continue  # writers are created lazily: no empty runs
                writer = self._val_writer if validation else self._train_writer
                with writer.as_default():
                    for tag, value in scalars:
                        self.summary.scalar(tag, value, step=epoch)
            self._write_gate_utilisation(epoch)

    # -------------------------------------------------------------- probes
    def _write_gradient_similarity(self, step: int) -> None:
        x, y, sw = self._similarity_batch
        matrix = monitoring.gradient_similarity(self.model, x, y, sw)
        names = self._model_task_names()
        # Explicit record_if: independent of Keras's update_freq condition.
        with self.summary.record_if(True), self._train_writer.as_default():
            for i, a in enumerate(names):
                for j in range(i + 1, len(names)):
                    self.summary.scalar(
                        f"gradient_similarity/{a}_vs_{names[j]}", matrix[i, j], step=step
                    )
            self.summary.image(
                "gradient_similarity/heatmap",
                monitoring.heatmap_rgb(matrix)[None],
                step=step,
                description="Cosine similarity of per-task shared gradients; rows and "
                f"columns: {', '.join(names)}. Blue -1, white 0, red +1.",
            )

    def _write_gate_utilisation(self, epoch: int) -> None:
        if self._gate_model is None and self._fusion_model is None:
            return  # no Gate / FusionWeights layers: nothing to log
        x = self.gate_data
        if x is None:
            if self._similarity_batch is None:
                return
            x = self._similarity_batch[0]
        if not isinstance(x, (list, tuple, dict)):
            x = [x]  # gate_model takes `model.inputs`, always a list
        with self._train_writer.as_default():
            if self._gate_model is not None:
                for key, w in self._gate_model(x, training=False).items():
                    for i, value in enumerate(np.asarray(w).mean(axis=0)):
                        self.summary.scalar(f"gates/{key}/expert_{i}", value, step=epoch)
            if self._fusion_model is not None:
                # Which modality each task relies on (builders.fusion).
                fusion_model, modalities = self._fusion_model
                for task, w in fusion_model(x, training=False).items():
                    for modality, value in zip(modalities, np.asarray(w).mean(axis=0)):
                        self.summary.scalar(f"fusion/{task}/{modality}", value, step=epoch)

    def _model_task_names(self) -> list[str]:
        # Gradients come in the model's task order, whatever `tasks` says.
        return list(getattr(self.model, "task_names", self._task_names))


def _task_names(tasks: Any) -> list[str]:
    if isinstance(tasks, (str, Task)):
        tasks = [tasks]
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(
            f"`tasks` must be a non-empty list of task names or Task specs, got {tasks!r}."
        )
    names = []
    for t in tasks:
        if isinstance(t, Task):
            names.append(t.name)
        elif isinstance(t, str):
            names.append(validate_task_name(t))
        else:
            raise ValueError(
                f"`tasks` must hold task names or Task specs, got {t!r} of type {type(t).__name__}."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"`tasks` has duplicated names: {names}.")
    return names


def _fusion_weights_model(model: keras.Model) -> tuple[keras.Model, list[str]] | None:
    """(model returning `{task: (batch, M) fusion weights}`, modality names), or
    None when `model` has no `FusionWeights` layers."""
    from mtl_keras.layers.fusion_weights import FusionWeights

    if not any(isinstance(layer, FusionWeights) for layer in model.layers):
        return None
    from mtl_keras.builders.fusion import fusion_weight_model, modality_names

    return fusion_weight_model(model), modality_names(model)
