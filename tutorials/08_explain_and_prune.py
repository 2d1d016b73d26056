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
# # 08 · What does each task use? Then make the model smaller
#
# Two questions multi-task users ask once a model works:
#
# 1. **What does the shared trunk learn for whom?** Which raw features drive `income`, which drive
#    `never_married`, and which do both tasks rely on? → `mtl_keras.explain`: per-task integrated
#    gradients on the *raw* columns, checked against permutation importance, as a feature × task table,
#    a heat map and a TensorBoard summary.
# 2. **Can it be smaller?** → `mtl_keras.compress`: gradual magnitude pruning as part of `fit`, with
#    separate sparsity for shared and task-specific parameters, and the per-task price of each sparsity.
#
# Data: UCI Census-Income (KDD), as in the quickstart.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import mtl_keras as mk
from mtl_keras import compress, explain
from mtl_keras.datasets import census_income
from mtl_keras.datasets.census_income import CATEGORICAL, LOG_FEATURES, NUMERIC

# QUICK=1 (the test-suite) uses a subsample and one epoch per stage; QUICK=0 uses all rows.
QUICK = os.environ.get("MTL_KERAS_QUICK", "0") == "1"
keras.utils.set_random_seed(0)
TASKS = ["income", "never_married"]

train, test = census_income()
rng = np.random.default_rng(0)
if QUICK:
    train = train.take(rng.permutation(len(train))[:8000])
    test = test.take(rng.permutation(len(test))[:3000])
features, labels = train
encoder = mk.layers.TabularEncoder.adapt(
    features, categorical=CATEGORICAL, numeric=NUMERIC, log_features=LOG_FEATURES, name="features"
)
encoder_config = encoder.get_config()


def build():
    """The quickstart's shared-bottom model, with a fresh copy of the fitted encoder."""
    enc = mk.layers.TabularEncoder.from_config(encoder_config)
    return mk.builders.shared_bottom(
        enc.inputs(),
        [mk.Binary(t) for t in TASKS],
        encoder=enc,
        trunk_units=(256, 128),
        tower_units=(64,),
    )


train_ds = mk.data.from_arrays(features, labels, batch_size=512, shuffle=True, seed=0)
test_ds = mk.data.from_arrays(*test, batch_size=4096)
model = build()
model.compile(keras.optimizers.Adam(2e-3), weighting="static")
model.fit(train_ds, epochs=1 if QUICK else 3, verbose=0)
dense_scores = model.evaluate(test_ds, verbose=0, return_dict=True)
print({k: round(v, 4) for k, v in dense_scores.items() if k.endswith("auc")})

# %% [markdown]
# ## 1. Per-task attributions on raw features
#
# `explain.integrated_gradients` walks from a baseline row to each real row and adds up each task's
# gradient along the way. Numeric columns are interpolated as they are (baseline: the training mean the
# encoder standardises to 0); a categorical column is interpolated in its **embedding** (baseline: its
# mean embedding over the rows explained), and its attribution is the sum over its embedding dimensions.
# So every raw column gets one number per row and per task.
#
# **Completeness** is the built-in sanity check: each row's attributions add up to
# `f(row) − f(baseline)`. `completeness_error` is the largest gap relative to the mean
# `|f(row) − f(baseline)|`; the test-suite holds it under 2 % at 128 steps. (Heavy-tailed columns the
# encoder log-transforms, like `capital_gains`, are interpolated in that log space: along a raw-space
# path nearly all the change would happen in the first step and the sum would not converge.)

# %%
rows = test.take(np.arange(300 if QUICK else 2000)).features
attributions = explain.integrated_gradients(model, rows, steps=128)
for task in TASKS:
    print(f"{task:14s} completeness error {attributions.completeness_error(task):.2%}")

table = explain.importance_table(attributions)  # mean |attribution|, each task's column sums to 1
table.sort_values("income", ascending=False).head(10).round(3)

# %% [markdown]
# The heat map shows the strongest features over both tasks. Read it by rows: a feature bright in one
# column only is that task's own signal; bright in both, it is what the shared trunk learns for both.

# %%
ax = explain.plot_importance(table, top=15)

# %%
explain.shared_features(table, top=8)

# %% [markdown]
# ### Cross-check: permutation importance
#
# Integrated gradients is a statement about the model's gradients. Permutation importance is
# model-agnostic: shuffle one column, see how much each task's loss rises. The two need not agree on
# the exact numbers (one measures local sensitivity, the other the loss a column is worth) but the
# leading features should be the same.

# %%
perm_rows = test.take(np.arange(2000 if QUICK else 20000))
permutation = explain.permutation_importance(
    model, perm_rows.features, perm_rows.labels, repeats=1 if QUICK else 3
)
for task in TASKS:
    top_ig = list(table[task].sort_values(ascending=False).index[:5])
    top_perm = list(permutation[task].sort_values(ascending=False).index[:5])
    print(f"{task}:\n  integrated gradients {top_ig}\n  permutation          {top_perm}")
    print(f"  overlap of the top 5: {len(set(top_ig) & set(top_perm))}/5")

# %% [markdown]
# ### Into TensorBoard
#
# `log_importance` writes the heat map (image), the table (text) and one scalar per cell;
# `explain.ImportanceTensorBoard(rows, logdir, every=1)` does the same at the end of epochs during `fit`,
# so you can watch the tasks' features drift apart (or not) while training.

# %%
explain.log_importance(table, "runs/explain_census/importance")
sorted(os.listdir("runs/explain_census/importance"))[:1]

# %% [markdown]
# ### The other per-task views, read together
#
# Attributions say **what** each task hears; the architecture's own views say **where** it listens:
# MMoE/PLE gates (`explain.gate_utilisation`: weight per expert), MTAN attention
# (`explain.task_attention`: mean mask per trunk block) and fusion weights (`explain.fusion_weights`:
# weight per modality). `explain.task_views(model, rows)` computes whichever apply, on the same rows.
# Two tasks whose gates pick the same experts and whose attributions share features really share the
# trunk; disjoint gates with disjoint features mean the "shared" model has split itself in two.

# %%
mmoe = mk.builders.mmoe(
    mk.layers.TabularEncoder.from_config(encoder_config).inputs(),
    [mk.Binary(t) for t in TASKS],
    encoder=mk.layers.TabularEncoder.from_config(encoder_config),
    num_experts=4, expert_units=(64,), tower_units=(32,),
)  # fmt: skip
mmoe.compile(keras.optimizers.Adam(2e-3), weighting="static")
mmoe.fit(train_ds, epochs=1, verbose=0)
views = explain.task_views(mmoe, rows)
{gate: np.round(weights, 2).tolist() for gate, weights in views["gates"].items()}

# %% [markdown]
# ## 2. Pruning, task-aware
#
# `compress.pruning_optimizer` wraps the optimizer: it keeps one 0/1 mask per kernel and embedding
# table (non-trainable optimizer variables, so they are saved in `.keras` files and restored on resume)
# and re-applies them after **every** optimizer step; the masks are recomputed on a polynomial schedule
# (`begin_step`, `end_step`, `frequency`). Shared and task-specific parameters get their own final
# sparsity. Everything else is plain `fit`, with any weighting strategy.
#
# We fine-tune the trained dense model to several sparsities and measure each task's AUC drop.

# %%
dense_weights = model.get_weights()
epochs = 1 if QUICK else 2
steps = len(train_ds) * epochs
# (shared, task-specific) final sparsity; "dense" gets the same extra epochs without pruning.
plans = {
    "dense": (0.0, 0.0),
    "50%": (0.5, 0.5),
    "80%": (0.8, 0.8),
    "90%": (0.9, 0.9),
    "shared 50% / tasks 90%": (0.5, 0.9),
}
scores = {}
pruned = {}
for name, (shared, task) in plans.items():
    m = build()
    m.set_weights(dense_weights)
    callbacks = []
    if name == "dense":
        optimizer = keras.optimizers.Adam(1e-3)
    else:
        schedule = compress.PolynomialDecay(
            max(shared, task),
            begin_step=0,
            end_step=int(0.7 * steps),
            frequency=max(1, steps // 20),
        )
        optimizer = compress.pruning_optimizer(
            m, keras.optimizers.Adam(1e-3), schedule, shared_sparsity=shared, task_sparsity=task
        )
        callbacks = [compress.PruningCallback()]
    m.compile(optimizer, weighting="static")
    history = m.fit(train_ds, epochs=epochs, verbose=0, callbacks=callbacks)
    scores[name] = m.evaluate(test_ds, verbose=0, return_dict=True)
    pruned[name] = m
    logged = {k: round(v[-1], 3) for k, v in history.history.items() if k.startswith("sparsity")}
    print(f"{name:24s}", logged)

# %% [markdown]
# The per-task price of sparsity (positive = AUC lost vs dense), as a table and a curve:

# %%
import pandas as pd

uniform = {0.0: scores["dense"], **{float(k[:-1]) / 100: scores[k] for k in ("50%", "80%", "90%")}}
drop = compress.metric_drop(uniform, [f"{t}_auc" for t in TASKS])
ax = explain.plot_metric_drop(drop)
task_aware = (
    compress.metric_drop(
        {0.0: scores["dense"], 0.5: scores["shared 50% / tasks 90%"]}, [f"{t}_auc" for t in TASKS]
    )
    .loc[[0.5]]
    .rename(index={0.5: "shared 50% / tasks 90%"})
)
pd.concat([drop, task_aware]).round(4)

# %% [markdown]
# ## 3. Export: strip the wrapper, then compress
#
# `strip_pruning` makes the zeros final and removes the wrapper (a `.keras` saved after it has no masks).
# Unstructured zeros do not shrink a TFLite file or its CPU latency (tensors stay dense) — they shrink
# the **compressed** size, and combine with int8 quantisation. `benchmarks/pruning.py` measures size
# and latency for 50/80/90 % on the full data.

# %%
import gzip
import pathlib

from mtl_keras.export import export_tflite

sizes = {}
for name, m in [("dense", pruned["dense"]), ("90%", pruned["90%"])]:
    if name != "dense":
        compress.strip_pruning(m)
    for quantization in ("float32", "dynamic_int8"):
        path = pathlib.Path(f"model_{name.strip('%')}_{quantization}.tflite")
        export_tflite(m, path, quantization=quantization)
        data = path.read_bytes()
        sizes[(name, quantization)] = {
            "KB": len(data) / 1024,
            "gzip KB": len(gzip.compress(data, compresslevel=9)) / 1024,
        }
pd.DataFrame(sizes).T.round(1)
