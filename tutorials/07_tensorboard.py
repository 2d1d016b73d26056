# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · TensorBoard: one section per task, and how to read it
#
# With one task, TensorBoard's `epoch_loss` chart tells you most of what you need. With several, the
# total loss hides the story: one task can overfit while another is still learning, the weighting
# strategy can quietly starve a task, and the tasks' gradients can start to disagree. `TaskTensorBoard`
# is Keras's TensorBoard callback plus:
#
# * one **section per task** (`income/loss`, `income/weight`, `income/auc`, ...), with train and
#   validation overlaid in each chart;
# * per-step curves of the same quantities (`income/batch_loss`, ...) when `update_freq` is a number;
# * a **gradient-similarity probe**: every N steps, the cosine similarity between the tasks' gradients on
#   the shared trunk, as scalars and as a heat-map image.
#
# Here we train a small Census-Income model with it, stop training early on a *combined* validation
# objective (`MultiTaskObjective` + Keras's `EarlyStopping`), then read the event files back and draw
# what each TensorBoard panel shows, with how to read it and where it lives in the UI. To look at the real
# thing: `tensorboard --logdir runs/` and open http://localhost:6006.

# %%
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
import mtl_keras as mk
from mtl_keras.datasets import census_income
from mtl_keras.datasets.census_income import CATEGORICAL, LOG_FEATURES, NUMERIC
from tensorboard.backend.event_processing import event_accumulator

tf.get_logger().setLevel("ERROR")
# QUICK=1 (the test-suite's setting): 3,000 training rows and at most 6 epochs.
QUICK = os.environ.get("MTL_KERAS_QUICK", "0") == "1"
N_ROWS, MAX_EPOCHS = (3000, 6) if QUICK else (20000, 20)
UPDATE_FREQ, SIMILARITY_FREQ = 4, 8  # steps between per-step points / similarity probes
LOG_DIR = "runs/tensorboard"
TASKS = ["income", "never_married"]
keras.utils.set_random_seed(0)
START = time.time()

# %% [markdown]
# ## 1. Train with `TaskTensorBoard` and early stopping on a combined objective
#
# Early stopping on a multi-task model needs *one* number per epoch. The total validation loss is a poor
# choice: it is dominated by whichever task has the largest loss scale (and under uncertainty weighting
# its scale changes as the weights move). `MultiTaskObjective` adds `val_mtl_objective` to the epoch logs:
# the mean over tasks of each validation loss divided by its first-epoch value, so every task counts
# equally. Keras's own `EarlyStopping(monitor="val_mtl_objective", mode="min")` then works unchanged,
# as long as the objective comes **before** it in `callbacks=[...]` (Keras hands the same logs dict to
# each callback in order; TensorBoard after it logs the key too).
#
# The training set is deliberately small and the learning rate high, so the model starts to overfit
# within a few epochs and early stopping has something to do.

# %%
train, val = census_income(nrows=N_ROWS)  # validation rows come from the test file
encoder = mk.layers.TabularEncoder.adapt(
    train.features,
    categorical=CATEGORICAL,
    numeric=NUMERIC,
    log_features=LOG_FEATURES,
    name="features",
)
model = mk.builders.shared_bottom(
    encoder.inputs(),
    [mk.Binary(t) for t in TASKS],
    encoder=encoder,
    trunk_units=(256, 128),
    tower_units=(32,),
)
model.compile(keras.optimizers.Adam(5e-3), weighting="uncertainty")
train_ds = mk.data.from_arrays(*train, batch_size=256, shuffle=True, seed=0)
val_ds = mk.data.from_arrays(*val, batch_size=4096)

# A fixed batch for the gradient probe: the same 512 rows every time, so changes
# in the curve come from the model, not from batch noise.
probe = val.take(np.arange(512))
similarity_data = ({k: tf.constant(v) for k, v in probe.features.items()}, probe.labels)

objective = mk.callbacks.MultiTaskObjective()  # adds val_mtl_objective
stop = keras.callbacks.EarlyStopping(
    monitor="val_mtl_objective", mode="min", patience=2, restore_best_weights=True, verbose=1
)
board = mk.callbacks.TaskTensorBoard(
    LOG_DIR,
    update_freq=UPDATE_FREQ,
    gradient_similarity_freq=SIMILARITY_FREQ,
    similarity_data=similarity_data,
)
history = model.fit(
    train_ds,
    validation_data=val_ds,
    epochs=MAX_EPOCHS,
    shuffle=False,
    verbose=2,
    callbacks=[objective, stop, board],
)
epochs_run = len(history.history["loss"])
best = int(np.argmin(history.history["val_mtl_objective"]))
print(
    f"ran {epochs_run} of {MAX_EPOCHS} epochs; best val_mtl_objective "
    f"{history.history['val_mtl_objective'][best]:.3f} at epoch {best + 1}"
    + ("; stopped early, best weights restored" if stop.stopped_epoch else "")
)

# %% [markdown]
# ## 2. What is on disk
#
# TensorBoard reads *runs*: folders of event files. The callback writes two, `train/` and `validation/`,
# and TensorBoard shows each as one coloured line in every chart. Everything below is read back from these
# files with TensorBoard's own `EventAccumulator`, so the plots show the same data the UI would. (TF2
# summaries are stored as tensors: a scalar is a 0-d tensor, an image a list of PNG strings.)

# %%
for folder, _, files in sorted(os.walk(LOG_DIR)):
    for name in files:
        size = os.path.getsize(os.path.join(folder, name)) / 1024
        print(f"{os.path.relpath(folder, LOG_DIR):12s} {name[:40]}...  ({size:.0f} KiB)")

runs = {}
for run in ["train", "validation"]:
    acc = event_accumulator.EventAccumulator(
        os.path.join(LOG_DIR, run), size_guidance={event_accumulator.TENSORS: 0}
    )
    runs[run] = acc.Reload()


def scalar(run, tag):
    # (steps, values) of one scalar tag, as TensorBoard plots it.
    events = runs[run].Tensors(tag) if tag in runs[run].Tags()["tensors"] else []
    return (
        np.array([e.step for e in events]),
        np.array([float(tf.make_ndarray(e.tensor_proto)) for e in events]),
    )


for run, acc in runs.items():
    tags = sorted(acc.Tags()["tensors"])
    print(f"\n{run}: {len(tags)} tags")
    print("   ", ", ".join(t for t in tags if t.split("/")[0] in TASKS + ["gradient_similarity"]))
    print("    Keras's own:", ", ".join(t for t in tags if t.startswith(("epoch_", "batch_"))))

# %% [markdown]
# ## 3. The per-task sections (Scalars / Time Series tab, one section per task)
#
# In the UI each task is a collapsible section named after it; inside, one chart per quantity, each with a
# `train` and a `validation` line (tick the runs in the left panel). Epochs are on the x-axis (starting at
# 0). Here are the three charts of each section:
#
# * **`<task>/loss`**: the task's own loss (mean over the rows labelled for that task). A validation line
#   that turns up while the training line keeps falling is that task overfitting, even if the total loss
#   still looks fine.
# * **`<task>/weight`**: the weight the strategy currently puts on that task (for uncertainty weighting,
#   `exp(-log σ²)`); the train line is its average over the epoch, the validation line its value at the
#   end of the epoch. A weight that keeps shrinking means the strategy is
#   giving up on that task.
# * **`<task>/auc`** (and `accuracy`): the task's metrics; validation is what to compare across runs.

# %%
quantities = ["loss", "weight", "auc"]
fig, axes = plt.subplots(len(TASKS), len(quantities), figsize=(11, 5.2), sharex=True)
for row, task in enumerate(TASKS):
    for col, quantity in enumerate(quantities):
        ax = axes[row, col]
        for run, style in [("train", "-o"), ("validation", "--s")]:
            steps, values = scalar(run, f"{task}/{quantity}")
            if len(steps):
                ax.plot(steps, values, style, label=run, markersize=4)
        ax.axvline(best, color="green", alpha=0.3, lw=3)
        ax.set_title(f"{task}/{quantity}", fontsize=10)
        if row == len(TASKS) - 1:
            ax.set_xlabel("epoch")
axes[0, 0].legend(fontsize=8)
fig.suptitle("Scalars tab: one section per task (green: best epoch by val_mtl_objective)")
plt.tight_layout()

# %% [markdown]
# ## 4. Per-step curves (same sections, `<task>/batch_*`)
#
# With `update_freq=4`, every 4th training step adds a point to `<task>/batch_loss`, `<task>/batch_weight`,
# ... in the `train` run, with the **global step** on the x-axis. The values are Keras's running averages
# over the current epoch, so the curve is smooth within an epoch and jumps at each epoch boundary, where
# the average restarts (the dotted lines below). Use these to see *within-epoch* behaviour: a weight that
# moves fast, a loss spike after a learning-rate change. Keras's own `batch_loss` (all tasks mixed) sits in
# the `batch_*` section.

# %%
steps_per_epoch = len(train_ds)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
for task in TASKS:
    for ax, quantity in zip(axes, ["batch_loss", "batch_weight"]):
        steps, values = scalar("train", f"{task}/{quantity}")
        ax.plot(steps, values, ".-", label=task)
for ax, quantity in zip(axes, ["<task>/batch_loss", "<task>/batch_weight"]):
    for e in range(1, epochs_run):
        ax.axvline(e * steps_per_epoch, color="gray", ls=":", lw=1)
    ax.set_title(quantity)
    ax.set_xlabel("global step")
    ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# ## 5. The combined objective and early stopping (`epoch_*` section)
#
# Keras's own charts are kept: `epoch_loss` (the *weighted* total) and, because `MultiTaskObjective` ran
# before the TensorBoard callback, `epoch_mtl_objective` in the `validation` run. That is the curve early
# stopping watched: it starts at 1.0 by construction, and training stopped `patience` epochs after its
# minimum, with the weights of the best epoch restored.
#
# Why not watch `val_loss` instead? It is the *weighted* sum, and the uncertainty weights keep growing as
# the losses fall (section 3), which inflates it: in the quick run it bottoms out an epoch earlier than
# either task's own validation loss does. The normalised objective is computed from the unweighted task
# losses, so the strategy's weights cannot move it.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
steps, values = scalar("validation", "epoch_mtl_objective")
axes[0].plot(steps, values, "--s", color="tab:orange", label="validation")
axes[0].axvline(
    best, color="green", alpha=0.3, lw=3, label=f"best: x={best} (Keras's epoch {best + 1})"
)
axes[0].axhline(1.0, color="gray", ls=":", lw=1)
axes[0].set_title("epoch_mtl_objective (normalised val losses)")
axes[0].legend(fontsize=8)
for run, style in [("train", "-o"), ("validation", "--s")]:
    steps, values = scalar(run, "epoch_loss")
    axes[1].plot(steps, values, style, label=run)
axes[1].set_title("epoch_loss (weighted total, all tasks mixed)")
axes[1].legend(fontsize=8)
for ax in axes:
    ax.set_xlabel("epoch")
plt.tight_layout()
total = history.history["val_loss"]
print(
    f"val_mtl_objective was lowest at epoch {best + 1}; the weighted total val_loss at epoch "
    f"{int(np.argmin(total)) + 1}"
)
for task in TASKS:
    v = history.history[f"val_{task}_loss"]
    print(f"val {task}_loss: first {v[0]:.4f}, best-epoch {v[best]:.4f}, last {v[-1]:.4f}")

# %% [markdown]
# ## 6. Gradient similarity (`gradient_similarity` section and Images tab)
#
# Every `gradient_similarity_freq=8` steps the callback takes the fixed probe batch, computes each task's
# gradient of its own loss with respect to the **shared** parameters (the trunk and the encoder), and
# writes their cosine similarity. It runs outside the train step, in inference mode, so the optimiser
# never sees it.
#
# * Scalars: `gradient_similarity/income_vs_never_married` (one per task pair), x-axis = global step.
#   Near +1: the tasks pull the trunk the same way; near 0: they use it independently; **below 0: they
#   conflict**, and a plain weighted sum of losses partly cancels one task's update with the other's. A
#   curve that sits below zero is the signal to try a gradient aggregator such as `pcgrad` or `upgrad`
#   (tutorial 02).
# * Images: `gradient_similarity/heatmap`, the full task × task matrix at each probe (use the step slider
#   above the image): rows and columns in task order, blue −1, white 0, red +1, grey for a task with no
#   labelled row in the probe batch. With two tasks it repeats the scalar; with five it shows at a glance
#   *which* pairs conflict.

# %%
import io

steps, sims = scalar("train", "gradient_similarity/income_vs_never_married")
heatmaps = runs["train"].Tensors("gradient_similarity/heatmap")
# An image summary is a string tensor [width, height, png, ...]: decode the PNG bytes.
first_png = tf.make_ndarray(heatmaps[0].tensor_proto)[2]
last_png = tf.make_ndarray(heatmaps[-1].tensor_proto)[2]

fig = plt.figure(figsize=(12, 3.4))
ax = fig.add_subplot(1, 4, (1, 2))
ax.plot(steps, sims, "o-", color="tab:purple")
ax.axhline(0, color="gray", lw=1)
ax.set_ylim(-1, 1)
ax.set_xlabel("global step")
ax.set_ylabel("cosine similarity")
ax.set_title("gradient_similarity/income_vs_never_married")
for i, (png, event) in enumerate([(first_png, heatmaps[0]), (last_png, heatmaps[-1])]):
    ax = fig.add_subplot(1, 4, 3 + i)
    ax.imshow(plt.imread(io.BytesIO(png)), interpolation="nearest")
    ax.set_xticks([12, 36], TASKS, fontsize=8)
    ax.set_yticks([12, 36], TASKS, fontsize=8)
    ax.set_title(f"heatmap image, step {event.step}", fontsize=10)
plt.tight_layout()
print(
    f"{len(steps)} probes; similarity from {sims[0]:.2f} (step {steps[0]}) to "
    f"{sims[-1]:.2f} (step {steps[-1]}); min {sims.min():.2f}"
)

# %% [markdown]
# The PNG is small on purpose (24 pixels per cell, no labels: TensorBoard shows images as they are). For
# a report, `mtl_keras.plots.plot_gradient_similarity` draws the same matrix with labels and values; here for the
# last probe, recomputed on the restored best weights with `mk.callbacks.monitoring.gradient_similarity`:

# %%
from mtl_keras.plots import plot_gradient_similarity

matrix = mk.callbacks.monitoring.gradient_similarity(model, *similarity_data)
plot_gradient_similarity(matrix, model.task_names)
plt.tight_layout()
print(f"notebook ran in {time.time() - START:.0f} s")

# %% [markdown]
# ## Where everything is in the UI
#
# | What | Tag(s) | Run(s) | TensorBoard tab |
# |---|---|---|---|
# | per-task loss, weight, metrics per epoch | `<task>/loss`, `<task>/weight`, `<task>/auc`, ... | train, validation | Scalars / Time Series, section `<task>` |
# | per-task curves per step (`update_freq=N`) | `<task>/batch_loss`, `<task>/batch_weight`, ... | train | same section |
# | combined objective | `epoch_mtl_objective` | validation | section `epoch_*` |
# | Keras's totals and mixed metrics | `epoch_loss`, `epoch_income_auc`, `batch_loss`, ... | train, validation | sections `epoch_*`, `batch_*` |
# | gradient similarity per pair | `gradient_similarity/<a>_vs_<b>` | train | section `gradient_similarity` |
# | gradient similarity matrix | `gradient_similarity/heatmap` | train | Images |
# | mean gate weight per expert (MMoE, PLE only) | `gates/<gate>/expert_<i>` | train | section `gates` |
#
# ## Results
#
# Measured on a shared 2-core machine (the exact numbers move a little from run to run):
#
# * **Quick setting** (3,000 rows, at most 6 epochs; 55–85 s wall time on the shared machine, ~20 s of CPU): `val_mtl_objective` went 1.00 → 0.81 → 0.74
#   → **0.71** (epoch 4) → 0.74 → 0.83; `EarlyStopping` stopped after epoch 6 and restored epoch 4, where both
#   tasks' validation losses were also at their minimum.
# * **Full setting** (`MTL_KERAS_QUICK=0`: 20,000 rows, up to 20 epochs, ~2.5 min): stopped after epoch 6
#   of 20 and restored epoch 4 (objective 0.93). Here the per-task charts show what a total loss would
#   hide: `never_married`'s validation loss was lowest after the *first* epoch (0.094) and crept up to
#   0.096 at epoch 4, while `income`'s kept falling from 0.153 to 0.128. The normalised objective weighs
#   relative changes equally, so it kept training while `income` gained 16% and `never_married` lost 2%.
#   If one task matters more, give `MultiTaskObjective(mode="delta_m", baselines=...)` the metrics you care
#   about, or checkpoint on that task's own `val_<task>_loss`.
# * **Gradient similarity** stays close to zero: from about +0.2 / +0.14 (quick / full) at the first probe
#   down to about +0.05, with occasional dips slightly below zero (minimum −0.09 / −0.17). The two tasks use
#   the shared trunk mostly independently and rarely conflict, which is why plain loss weighting does as
#   well as the gradient aggregators on this data (tutorial 02). A pair that sat clearly below zero would
#   be the cue to try `pcgrad` or `upgrad`.
