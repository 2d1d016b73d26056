"""Cost of MultiTaskModel's custom train step vs a plain Keras `loss_weights` step.

Same functional graph (64 inputs, 256-128 trunk, two 64-unit towers, two
binary heads), same optimizer, same data, same metrics; measured in one run,
alternating the two models over several rounds and taking the median epoch
time of each. Prints the ratio (target: <= 1.05).

    python benchmarks/custom_step_overhead.py [--steps 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import mtl_keras as mk


def graph(tasks):
    keras.utils.set_random_seed(0)
    x = keras.Input((64,), name="x")
    trunk = mk.layers.MLP((256, 128), name="trunk")(x)
    return x, {t.name: t.head(mk.layers.MLP((64,), name=f"{t.name}_tower")(trunk)) for t in tasks}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--jit", choices=["auto", "true", "false"], default="auto")
    args = parser.parse_args()
    jit = {"auto": "auto", "true": True, "false": False}[args.jit]

    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    x = rng.normal(size=(n, 64)).astype("float32")
    y = {"a": (x[:, 0] > 0).astype("float32"), "b": (x[:, 1] > 0).astype("float32")}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).cache()

    tasks = [mk.Binary("a"), mk.Binary("b")]
    inputs, outputs = graph(tasks)
    plain = keras.Model(inputs, outputs)
    plain.compile(
        keras.optimizers.Adam(1e-3),
        loss={"a": "binary_crossentropy", "b": "binary_crossentropy"},
        loss_weights={"a": 1.0, "b": 0.5},
        metrics={"a": [keras.metrics.AUC(), "accuracy"], "b": [keras.metrics.AUC(), "accuracy"]},
        jit_compile=jit,
    )
    inputs, outputs = graph(tasks)
    ours = mk.MultiTaskModel(inputs, outputs, tasks=tasks)
    ours.compile(keras.optimizers.Adam(1e-3), weighting="uncertainty", jit_compile=jit)

    times: dict[str, list[float]] = {"keras loss_weights": [], "mtl_keras uncertainty": []}
    models = {"keras loss_weights": plain, "mtl_keras uncertainty": ours}
    for model in models.values():  # compile/trace outside the timing
        model.fit(ds, epochs=1, verbose=0)
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            times[name].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times["keras loss_weights"])
    print(f"batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, jit_compile={jit}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:24s} {med * 1e3:7.3f} ms/step   ratio {med / base:5.3f}")


if __name__ == "__main__":
    main()
