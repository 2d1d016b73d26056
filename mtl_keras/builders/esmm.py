"""Entire Space Multi-task Model (Ma et al., SIGIR 2018)."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras.builders.common import encode_inputs, validate_units
from mtl_keras.layers.mlp import MLP
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Binary


def _binary(spec: str | Binary, what: str, weight: float = 1.0) -> Binary:
    if isinstance(spec, Binary):
        return spec
    if isinstance(spec, str):
        return Binary(spec, weight=weight)
    raise ValueError(f"`{what}` must be a task name or a Binary task, got {spec!r}.")


def esmm(
    inputs: Any,
    ctr_task: str | Binary = "ctr",
    cvr_task: str | Binary = "cvr",
    ctcvr_task: str | Binary = "ctcvr",
    trunk_units: Sequence[int] = (),
    tower_units: Sequence[int] = (64, 32),
    cvr_weight: float = 0.0,
    dropout: float = 0.0,
    l2: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    encoder: keras.layers.Layer | None = None,
    name: str = "esmm",
) -> MultiTaskModel:
    """ESMM: pCTR and pCVR towers over a shared embedding (+ optional
    trunk), trained over the entire impression space through
    `pCTCVR = pCTR * pCVR`, which avoids CVR's sample-selection bias.

    Outputs (all Binary tasks, probabilities):
    - `ctr`: supervised with click labels on every impression.
    - `ctcvr`: `ctr * cvr` exactly (a `Multiply` layer), supervised with
      click-and-conversion labels on every impression.
    - `cvr`: pCVR = P(conversion | click, x), the quantity served for
      ranking. It is learned only through `ctcvr`: leave its labels out of
      the `y` dict (the task then counts as unlabelled for every row and its
      loss is 0). Its static weight is `cvr_weight` (default 0), so even if
      labels are given it does not train unless you set `cvr_weight > 0`;
      to add direct CVR supervision on clicked rows, pass labels with NaN
      (or -1) for unclicked rows and `cvr_weight > 0`. Its metrics are
      computed whenever its labels are present.

    Args:
        inputs: a `keras.Input`, a list of them or a dict name -> `keras.Input`.
        ctr_task: name of (or `Binary` spec for) the CTR output.
        cvr_task: name of (or `Binary` spec for) the CVR output; a name gets
            `Binary(name, weight=cvr_weight)`.
        ctcvr_task: name of (or `Binary` spec for) the CTCVR output.
        trunk_units: widths of a shared MLP on the features (the paper
            shares only the embeddings: pass them as `encoder`).
        tower_units: widths of the CTR and CVR towers.
        cvr_weight: static loss weight of the CVR task when given by name.
        dropout: dropout rate after each hidden layer.
        l2: L2 penalty on every hidden kernel.
        activation: hidden activation.
        batch_norm: batch normalization in trunk and towers.
        encoder: optional layer mapping `inputs` to one feature tensor (the
            shared embedding, e.g. `mtl_keras.layers.TabularEncoder`).
        name: model name.

    Returns:
        A `MultiTaskModel` with outputs `ctr`, `cvr`, `ctcvr` (task names).

    Example:
    >>> import keras, numpy as np
    >>> from mtl_keras import builders
    >>> model = builders.esmm(keras.Input((8,)), tower_units=(8,))
    >>> model.compile("adam")
    >>> x = np.random.normal(size=(32, 8)).astype("float32")
    >>> click = (x[:, 0] > 0).astype("float32")
    >>> y = {"ctr": click, "ctcvr": click * (x[:, 1] > 0)}  # no "cvr" labels
    >>> _ = model.fit(x, y, epochs=1, verbose=0)
    """
    ctr = _binary(ctr_task, "ctr_task")
    cvr = _binary(cvr_task, "cvr_task", weight=cvr_weight)
    ctcvr = _binary(ctcvr_task, "ctcvr_task")
    names = [ctr.name, cvr.name, ctcvr.name]
    if len(set(names)) != 3:
        raise ValueError(f"ESMM task names must be distinct, got {names}.")
    validate_units(trunk_units, "trunk_units", allow_empty=True)
    validate_units(tower_units, "tower_units", allow_empty=True)
    features = encode_inputs(inputs, encoder)
    trunk = MLP(trunk_units, activation, dropout, l2, batch_norm, name="trunk")(features)
    p_ctr = ctr.head(
        MLP(tower_units, activation, dropout, l2, batch_norm, name=f"{ctr.name}_tower")(trunk)
    )
    p_cvr = cvr.head(
        MLP(tower_units, activation, dropout, l2, batch_norm, name=f"{cvr.name}_tower")(trunk)
    )
    # The product is the whole point of ESMM: ctcvr has no parameters of its
    # own, so its entire-space labels train both towers.
    p_ctcvr = keras.layers.Multiply(dtype="float32", name=ctcvr.name)([p_ctr, p_cvr])
    outputs = {ctr.name: p_ctr, cvr.name: p_cvr, ctcvr.name: p_ctcvr}
    # Both towers read only the trunk: it is the shared representation.
    return MultiTaskModel(
        inputs, outputs, tasks=[ctr, cvr, ctcvr], name=name, representation="trunk"
    )
