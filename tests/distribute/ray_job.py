"""A 2-worker `ray.train.tensorflow.TensorflowTrainer` job with mtl_keras on
this machine (run by test_ray.py in its own process: the driver never
imports TensorFlow; the workers do).

Ray sets `TF_CONFIG` on each worker before the training function creates
the MultiWorkerMirroredStrategy, so the function is the same one the
launcher or a cluster runs. Each worker trains under MWMS and, in the same
process, a single-device twin from the same global batches, and writes
`<out>/ray_worker<rank>.json` (weights checksum, max |multi - single|,
evaluate logs of both).

    python ray_job.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys


def train_fn(config: dict) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads Ray's TF_CONFIG
    import keras
    import numpy as np
    import ray.train

    import mtl_keras as mk

    rank = ray.train.get_context().get_world_rank()
    rng = np.random.default_rng(0)
    n, batch = 96, 33  # 17/16 rows per worker
    x = rng.normal(size=(n, 6)).astype("float32")
    click = (x[:, 0] > 0).astype("float32")
    click[np.arange(n) % batch < 12] = np.nan  # worker 0 has fewer click labels
    y = {"click": click, "dwell": (x[:, 1] - x[:, 2]).astype("float32")}

    def dataset():
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)

    def train(scope):
        with scope:
            keras.utils.set_random_seed(0)
            tasks = [mk.Binary("click"), mk.Regression("dwell")]
            model = mk.builders.shared_bottom(keras.Input((6,), name="x"), tasks, trunk_units=(8,))
            model.compile(keras.optimizers.SGD(0.1), weighting="uncertainty", jit_compile=False)
        model.fit(dataset(), epochs=2, verbose=0)
        logs = model.evaluate(dataset(), return_dict=True, verbose=0)
        return model, {k: float(v) for k, v in logs.items()}

    multi, multi_logs = train(strategy.scope())
    single, single_logs = train(tf.distribute.get_strategy().scope())
    pairs = zip(multi.weights, single.weights)
    report = {
        "rank": rank,
        "workers": strategy.num_replicas_in_sync,
        "diff": max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in pairs),
        "checksum": float(sum(np.abs(w.numpy()).astype("float64").sum() for w in multi.weights)),
        "evaluate": [multi_logs, single_logs],
    }
    with open(os.path.join(config["out"], f"ray_worker{rank}.json"), "w") as f:
        json.dump(report, f)
    ray.train.report({"diff": report["diff"]})


def main(out: str) -> None:
    # A local cluster without token files in ~/.ray, on loopback only.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    # Small: no dashboard, a small object store.
    ray.init(
        num_cpus=4,
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        log_to_driver=True,
        runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}},
    )
    trainer = TensorflowTrainer(
        train_fn,
        train_loop_config={"out": out},
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
        run_config=RunConfig(storage_path=os.path.join(out, "ray_results"), name="mtl"),
    )
    result = trainer.fit()
    ray.shutdown()
    if result.error is not None:
        raise result.error


if __name__ == "__main__":
    main(sys.argv[1])
