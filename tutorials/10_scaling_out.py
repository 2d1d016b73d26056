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
# # 10 · Scaling out: two workers training from Census-Income shards
#
# When the data no longer fits in memory and one machine is too slow, the same `MultiTaskModel`
# trains on several workers with TensorFlow's `MultiWorkerMirroredStrategy` (synchronous
# all-reduce), reading sharded files. Here both workers run on this machine, started by
# `mtl_keras.distribute.launch` (like `torchrun`): it gives each worker a `TF_CONFIG` on loopback
# ports, prefixes its output and stops everyone if one fails. On a cluster the orchestrator
# (Kubernetes, Vertex AI, Ray Train) sets `TF_CONFIG` and runs the same script.
#
# Steps: write Census-Income as TFRecord shards → adapt the feature encoder from a streamed
# sample → launch two workers that each read their own shards → the chief reports test AUC.

# %%
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd

import mtl_keras as mk
from mtl_keras.data import files
from mtl_keras.datasets.census_income import CATEGORICAL, LOG_FEATURES, NUMERIC, census_income
from mtl_keras.distribute import launch

QUICK = os.environ.get("MTL_KERAS_QUICK") == "1"
TRAIN_ROWS, TEST_ROWS = (8000, 2000) if QUICK else (None, None)
SHARDS, EPOCHS = (4, 2) if QUICK else (16, 3)

# %% [markdown]
# ## 1. Write the data as shards
#
# `write_tfrecords` writes `tf.train.Example` shards (rows dealt round-robin, so the shards are
# balanced) and a `_schema.json` with each column's type. It also takes an iterable of DataFrame
# chunks (e.g. `pd.read_csv(path, chunksize=50_000)`) for a table larger than memory. In production
# the shards come from your data pipeline; CSV (`from_csv`) and Parquet (`from_parquet`) shards are
# read the same way.

# %%
train, test = census_income()
rng = np.random.default_rng(0)
if TRAIN_ROWS:
    train = train.take(rng.permutation(len(train))[:TRAIN_ROWS])
    test = test.take(rng.permutation(len(test))[:TEST_ROWS])
features = list(train.features)
for name, split in (("train", train), ("test", test)):
    frame = pd.DataFrame({**split.features, **split.labels})
    paths = files.write_tfrecords(
        frame, f"census_shards/{name}", features, {t: t for t in split.labels}, num_shards=SHARDS
    )
print(len(paths), "shards per split, e.g.", paths[0])

# %% [markdown]
# ## 2. The encoder from a streamed sample
#
# `adapt_encoder` counts categories and accumulates numeric statistics batch by batch, so the
# vocabularies come from the files without loading them; the demo's piecewise-linear numeric
# encoding places its 32 quantile bins on a uniform reservoir sample of `bin_sample_rows` rows.

# %%
stream = files.from_tfrecords("census_shards/train", batch_size=2048)
encoder = files.adapt_encoder(
    stream,
    categorical=CATEGORICAL,
    numeric=NUMERIC,
    log_features=LOG_FEATURES,
    numeric_encoding="piecewise_linear",
    num_bins=32,
    bin_embedding_dim=8,
    bin_sample_rows=100_000,
    name="features",
)
with open("census_shards/_encoder.json", "w") as f:
    json.dump(encoder.get_config(), f)
print({name: len(v) for name, v in list(encoder.vocabularies.items())[:4]}, "...")

# %% [markdown]
# ## 3. The training script every worker runs
#
# The strategy is created first (it reads `TF_CONFIG`). The model is the demo's (`demo_model`: MMoE
# over the encoder) with the demo's optimizer. Each worker reads its own shards (tf.data
# auto-shard by file; there are more files than workers). `.repeat()` with `steps_per_epoch` keeps
# the workers in step even if their shards hold slightly different numbers of rows.
# `TaskTensorBoard` writes from the chief only. After training, the chief scores the test shards with
# a plain forward pass (no collectives needed).

# %%
SCRIPT = """
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras
import numpy as np
import mtl_keras as mk
from mtl_keras.data import files
from mtl_keras.datasets.census_income import demo_model, demo_optimizer
from mtl_keras.evaluation import binary_report

epochs, batch = int(sys.argv[1]), 512
with open("census_shards/_encoder.json") as f:
    config = json.load(f)
with open("census_shards/train/_schema.json") as f:
    rows = json.load(f)["rows"]
train = files.from_tfrecords("census_shards/train", batch_size=batch, shuffle_buffer=20_000, seed=0)
keras.utils.set_random_seed(0)
with strategy.scope():
    model = demo_model(mk.layers.TabularEncoder.from_config(config))
    model.compile(demo_optimizer(rows // batch, epochs), weighting="uncertainty")
tasks = model.tasks
model.fit(train.repeat(), steps_per_epoch=rows // batch, epochs=epochs, verbose=2,
          callbacks=[mk.callbacks.TaskTensorBoard("runs/scaling_out")])
if mk.distribute.is_chief(strategy):
    labels, scores = {t.name: [] for t in tasks}, {t.name: [] for t in tasks}
    for x, y in files.from_tfrecords("census_shards/test", batch_size=4096):
        out = model(x, training=False)
        for t in tasks:
            labels[t.name].append(y[t.name].numpy())
            scores[t.name].append(keras.ops.convert_to_numpy(out[t.name]))
    result = {t: binary_report(np.concatenate(labels[t]), np.concatenate(scores[t]))["auc"]
              for t in labels}
    result["workers"] = strategy.num_replicas_in_sync
    with open("scaling_out_result.json", "w") as f:
        json.dump(result, f)
    print("test AUC", result)
"""
with open("train_census.py", "w") as f:
    f.write(SCRIPT)

# %% [markdown]
# ## 4. Launch two workers
#
# The equivalent shell command is `mtl-keras launch --workers 2 train_census.py 1`. Output lines
# carry the worker's index; the exit code is 0 only if every worker succeeded.


# %%
class Quiet:
    """Drops TensorFlow's start-up chatter from the workers' output."""

    def write(self, line):
        if "I0000" not in line and "absl::InitializeLog" not in line:
            sys.stdout.write(line)

    def flush(self):
        sys.stdout.flush()


code = launch.launch(
    [sys.executable, "train_census.py", str(EPOCHS)], workers=2, timeout=900, out=Quiet()
)
print("exit code", code)
assert code == 0

# %%
with open("scaling_out_result.json") as f:
    result = json.load(f)
print(
    f"{result['workers']} workers: test AUC income {result['income']:.3f}, "
    f"never_married {result['never_married']:.3f}"
)

# %% [markdown]
# The two workers ended with identical weights (the all-reduce keeps them in sync), and training
# on 2 workers is numerically the same as training on one process with the same global batches (the
# test suite checks this for every kind of weighting strategy). On this 2-core machine the two
# workers compete for the same cores, so expect no speed-up here; the README section
# "Scaling out" measures the overhead and models the speed-up on real networks.
#
# How close is this to training in memory? `benchmarks/census_files.py` trains the demo recipe on
# the full data from shards and from memory with the same seed and compares test AUC and peak
# memory (README, "Scaling out" → "Training from files").
#
# To make a run fault tolerant, add `mk.distribute.BackupAndRestore("backup")` to the callbacks
# and rerun the same command after a failure: training resumes from the last completed epoch, and
# the workers check that they restored the same state.
