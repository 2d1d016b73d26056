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
# # 02 · Balancing tasks: loss weighting vs gradient aggregation
#
# Two tasks share one trunk, so each update of the trunk is a compromise. Two families of methods decide
# that compromise:
#
# * **Loss weighting** scales each task's loss and does one backward pass: `static` (fixed weights),
#   `uncertainty` (learned log-variances, Kendall et al. 2018), `dwa` (weights from how fast each loss
#   fell over the last epochs, Liu et al. 2019), `famo` (Liu et al. 2023: balance the *rate* of loss
#   decrease, no extra backward pass).
# * **Gradient aggregation** looks at each task's gradient on the shared parameters (the Jacobian, one row
#   per task) and combines the rows: `pcgrad` (project away conflicting components), `mgda` (min-norm point
#   of the convex hull: a common descent direction), `upgrad` (torchjd's projection of each row onto the
#   dual cone: never conflicts with any task).
#
# Why care? When tasks' gradients conflict (negative cosine), a plain sum can help one task at the expense
# of the other. Here we train the same model with each strategy on Census-Income and compare what each
# does to the task weights and to the per-task test AUC.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import time
import keras
import numpy as np
import matplotlib.pyplot as plt
import tensorflow as tf
import mtl_keras as mk

tf.get_logger().setLevel("ERROR")  # embedding gradients densified for the Jacobian: expected here
from mtl_keras.datasets import census_income
from mtl_keras.datasets.census_income import CATEGORICAL, LOG_FEATURES, NUMERIC

QUICK = os.environ.get("MTL_KERAS_QUICK", "0") == "1"  # the test-suite's setting
N_TRAIN, EPOCHS = (3000, 2) if QUICK else (60000, 4)
STRATEGIES = ["static", "uncertainty", "dwa", "famo", "pcgrad", "mgda", "upgrad"]

# %%
train, test = census_income()
rng = np.random.default_rng(0)
train = train.take(rng.permutation(len(train))[:N_TRAIN])
test = test.take(rng.permutation(len(test))[: N_TRAIN // 2])
encoder_config = mk.layers.TabularEncoder.adapt(
    train.features, categorical=CATEGORICAL, numeric=NUMERIC, log_features=LOG_FEATURES
).get_config()
train_ds = mk.data.from_arrays(*train, batch_size=256, shuffle=True, seed=0)
test_ds = mk.data.from_arrays(test.features, batch_size=4096)


def build(weighting):
    keras.utils.set_random_seed(0)  # same initial weights for every strategy
    encoder = mk.layers.TabularEncoder.from_config(encoder_config)
    model = mk.builders.shared_bottom(
        encoder.inputs(),
        [mk.Binary("income"), mk.Binary("never_married")],
        encoder=encoder,
        trunk_units=(128, 64),
        tower_units=(32,),
    )
    model.compile(keras.optimizers.Adam(2e-3), weighting=weighting)
    return model


# %% [markdown]
# Every strategy is one argument of `compile`: by name as here, or as an object with parameters
# (`mk.weighting.DWA(temperature=2.0)`, `mk.weighting.CAGrad(c=0.5)`, ...).

# %%
histories, results = {}, {}
for name in STRATEGIES:
    model = build(name)
    start = time.time()
    history = model.fit(train_ds, epochs=EPOCHS, verbose=0, shuffle=False)
    seconds = time.time() - start
    predictions = model.predict(test_ds, verbose=0)
    histories[name] = history.history
    results[name] = {
        t: mk.evaluation.roc_auc(test.labels[t], predictions[t])
        for t in ["income", "never_married"]
    } | {"seconds": seconds}
    print(
        f"{name:12s} income AUC {results[name]['income']:.4f}  "
        f"never_married AUC {results[name]['never_married']:.4f}  ({seconds:.1f} s)"
    )

# %% [markdown]
# ## What each strategy did to the task weights
#
# Loss-weighting strategies log the weight they put on each task loss; aggregators log the weights `w`
# of their update `direction = wᵀJ` (GradDrop, which picks signs per parameter, logs the share of each
# task's gradient it kept), so both families can be read on one chart. The ratio `income / never_married` shows which task the strategy favoured.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, h in histories.items():
    ratio = np.array(h["income_weight"]) / np.maximum(np.array(h["never_married_weight"]), 1e-9)
    ax.plot(range(1, len(ratio) + 1), ratio, marker="o", label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("weight ratio income / never_married")
ax.set_yscale("log")
ax.legend(ncol=2, fontsize=8)
ax.set_title("Relative task weight per strategy")
plt.tight_layout()

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
names = list(results)
x = np.arange(len(names))
for i, task in enumerate(["income", "never_married"]):
    ax.bar(x + (i - 0.5) * 0.4, [results[n][task] for n in names], width=0.4, label=task)
ax.set_xticks(x, names, rotation=30)
ax.set_ylim(0.85, 1.0)
ax.set_ylabel("test AUC")
ax.legend()
ax.set_title("Per-task test AUC by strategy")
plt.tight_layout()

# %% [markdown]
# ## Reading the results
#
# * On Census-Income the two tasks rarely conflict (they share most of their signal), so all strategies
#   land close together: balancing matters most when gradients point in opposite directions. Use
#   `TaskTensorBoard(gradient_similarity_freq=...)` to check that on your own data before reaching for an
#   expensive aggregator.
# * Aggregators cost more per step (one backward pass per task for the Jacobian); `rep_grad=True`
#   aggregates on the shared representation instead, which is much cheaper on large trunks. The measured
#   costs are in the README's "Weighting speed" table.
# * In the quick setting used by the test suite the differences are noise; run with `MTL_KERAS_QUICK=0`
#   for the full comparison.
