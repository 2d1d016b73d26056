"""MMoE paper's synthetic experiment (Ma et al., KDD 2018, section 4).

Two regression tasks whose correlation is set by the cosine `p` between
their weight vectors: u1, u2 orthogonal unit vectors, w1 = c*u1,
w2 = c*(p*u1 + sqrt(1 - p^2)*u2), and for x ~ N(0, I)

    y_t = w_t^T x + sum_{i=1..m} sin(alpha_i * w_t^T x + beta_i) + N(0, 0.01)

with alpha_i, beta_i ~ N(0, 1) shared by both tasks. The paper finds that
all models do worse as correlation drops, and MMoE degrades least compared
with a shared bottom. Prints test MSE (mean over the two tasks) as mean ±
std over seeds for each correlation.

    python benchmarks/mmoe_synthetic.py            # 3 correlations x 3 seeds (~5-10 min, 2 cores)
    python benchmarks/mmoe_synthetic.py --quick    # smoke run (~1 min)
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import mtl_keras as mk


def synthetic_data(
    n: int, p: float, seed: int, dim: int = 100, c: float = 1.0, m: int = 10
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Paper's generator; the same `seed` gives the same task definition."""
    rng = np.random.default_rng(seed)
    # Orthogonal unit vectors by Gram-Schmidt on two Gaussian draws.
    u1 = rng.normal(size=dim)
    u1 /= np.linalg.norm(u1)
    u2 = rng.normal(size=dim)
    u2 -= u2.dot(u1) * u1
    u2 /= np.linalg.norm(u2)
    w1 = c * u1
    w2 = c * (p * u1 + np.sqrt(1.0 - p**2) * u2)
    alpha = rng.normal(size=m)
    beta = rng.normal(size=m)
    x = rng.normal(size=(n, dim))
    y = {}
    for name, w in (("task1", w1), ("task2", w2)):
        z = x @ w
        y[name] = (
            z + np.sin(np.outer(z, alpha) + beta).sum(axis=1) + rng.normal(0, 0.1, size=n)
        ).astype("float32")
    return x.astype("float32"), y


def build(kind: str, dim: int) -> mk.MultiTaskModel:
    tasks = [mk.Regression("task1"), mk.Regression("task2")]
    inputs = keras.Input((dim,), name="x")
    if kind == "shared_bottom":
        # Paper: shared bottom sized to roughly match MMoE's parameter count.
        return mk.builders.shared_bottom(inputs, tasks, trunk_units=(113,), tower_units=(8,))
    return mk.builders.mmoe(inputs, tasks, num_experts=8, expert_units=(16,), tower_units=(8,))


def run(kind: str, p: float, seed: int, args: argparse.Namespace) -> float:
    x, y = synthetic_data(args.train + args.test, p, seed)
    xtr, xte = x[: args.train], x[args.train :]
    ytr = {k: v[: args.train] for k, v in y.items()}
    yte = {k: v[args.train :] for k, v in y.items()}
    keras.utils.set_random_seed(1000 + seed)
    model = build(kind, x.shape[1])
    model.compile(keras.optimizers.Adam(args.lr))
    model.fit(xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    res = model.evaluate(xte, yte, batch_size=1024, verbose=0, return_dict=True)
    return 0.5 * (float(res["task1_loss"]) + float(res["task2_loss"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--correlations", type=float, nargs="+", default=[1.0, 0.9, 0.5])
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny data, 3 epochs")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.train, args.test, args.epochs = 1, 1000, 500, 3
    start = time.time()
    print(
        f"seeds={args.seeds} train={args.train} test={args.test} epochs={args.epochs} "
        f"batch={args.batch_size} lr={args.lr}"
    )
    print(f"{'corr':>5}  {'shared_bottom MSE':>20}  {'MMoE MSE':>20}")
    for p in args.correlations:
        results = {
            kind: np.array([run(kind, p, s, args) for s in range(args.seeds)])
            for kind in ("shared_bottom", "mmoe")
        }
        sb, mm = results["shared_bottom"], results["mmoe"]
        print(
            f"{p:5.2f}  {sb.mean():10.4f} ± {sb.std():7.4f}  {mm.mean():10.4f} ± {mm.std():7.4f}",
            flush=True,
        )
    print(f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
