"""Bounding-box ops in TensorFlow: format conversion, IoU / GIoU, the
`1 - GIoU` loss and a mean-IoU metric used by `tasks.BoxRegression`.

Boxes are normalized coordinates, one box of 4 values per row. GIoU
(Rezatofighi et al., CVPR 2019) is IoU minus the fraction of the smallest
enclosing box not covered by the union; unlike IoU it still has a gradient
when the boxes do not overlap.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
# Keeps the divisions finite for degenerate (zero-area) boxes, e.g. the zero
# boxes that stand in for missing labels.
_EPS = 1e-7


def validate_box_format(box_format: Any) -> str:
    if box_format not in BOX_FORMATS:
        raise ValueError(f"`box_format` must be one of {BOX_FORMATS}, got {box_format!r}.")
    return box_format


def to_xyxy(boxes: Any, box_format: str = "xyxy") -> tf.Tensor:
    """Converts `(..., 4)` boxes to corners `(x1, y1, x2, y2)` with x1 <= x2,
    y1 <= y2 (swapped corners are reordered, so any prediction is a box).

    Args:
        boxes: `(..., 4)` tensor in `box_format`.
        box_format: "xyxy" (corners), "xywh" (top-left corner, width,
            height) or "cxcywh" (center, width, height).

    Example:
    >>> [round(float(v), 2) for v in to_xyxy([[0.5, 0.5, 0.2, 0.4]], "cxcywh")[0]]
    [0.4, 0.3, 0.6, 0.7]
    """
    validate_box_format(box_format)
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    a, b, c, d = tf.unstack(boxes, 4, axis=-1)
    if box_format == "xywh":
        x1, y1, x2, y2 = a, b, a + tf.abs(c), b + tf.abs(d)
    elif box_format == "cxcywh":
        hw, hh = tf.abs(c) / 2.0, tf.abs(d) / 2.0
        x1, y1, x2, y2 = a - hw, b - hh, a + hw, b + hh
    else:
        x1, y1, x2, y2 = tf.minimum(a, c), tf.minimum(b, d), tf.maximum(a, c), tf.maximum(b, d)
    return tf.stack([x1, y1, x2, y2], axis=-1)


def iou_and_giou(y_true: Any, y_pred: Any, box_format: str = "xyxy") -> tuple[tf.Tensor, tf.Tensor]:
    """Row-wise IoU and GIoU of two `(..., 4)` box tensors, shape `(...)`.

    Example:
    >>> iou, giou = iou_and_giou([[0., 0., 1., 1.]], [[2., 2., 3., 3.]])
    >>> round(float(iou[0]), 3), round(float(giou[0]), 3)
    (0.0, -0.778)
    """
    t = to_xyxy(y_true, box_format)
    p = to_xyxy(y_pred, box_format)
    tx1, ty1, tx2, ty2 = tf.unstack(t, 4, axis=-1)
    px1, py1, px2, py2 = tf.unstack(p, 4, axis=-1)
    area_t = (tx2 - tx1) * (ty2 - ty1)
    area_p = (px2 - px1) * (py2 - py1)
    iw = tf.maximum(tf.minimum(tx2, px2) - tf.maximum(tx1, px1), 0.0)
    ih = tf.maximum(tf.minimum(ty2, py2) - tf.maximum(ty1, py1), 0.0)
    inter = iw * ih
    union = area_t + area_p - inter
    iou = inter / (union + _EPS)
    enclose = (tf.maximum(tx2, px2) - tf.minimum(tx1, px1)) * (
        tf.maximum(ty2, py2) - tf.minimum(ty1, py1)
    )
    giou = iou - (enclose - union) / (enclose + _EPS)
    return iou, giou


@keras.saving.register_keras_serializable(package="mtl_keras")
class BoxLoss(keras.losses.Loss):
    """`1 - GIoU` (default) or `1 - IoU` between true and predicted boxes.

    Args:
        kind: "giou" or "iou".
        box_format: see `to_xyxy`.

    Example:
    >>> float(BoxLoss("giou")([[0., 0., 1., 1.]], [[0., 0., 1., 1.]])) < 1e-5
    True
    """

    def __init__(self, kind: str = "giou", box_format: str = "xyxy", **kwargs: Any) -> None:
        kwargs.setdefault("name", f"{kind}_loss")
        super().__init__(**kwargs)
        if kind not in ("giou", "iou"):
            raise ValueError(f"BoxLoss `kind` must be 'giou' or 'iou', got {kind!r}.")
        self.kind = kind
        self.box_format = validate_box_format(box_format)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        iou, giou = iou_and_giou(y_true, y_pred, self.box_format)
        return 1.0 - (giou if self.kind == "giou" else iou)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind, "box_format": self.box_format}


@keras.saving.register_keras_serializable(package="mtl_keras")
class BoxIoU(keras.metrics.Mean):
    """Mean IoU between true and predicted boxes (one box per row).

    Args:
        box_format: see `to_xyxy`.
        name: metric name.

    Example:
    >>> m = BoxIoU()
    >>> m.update_state([[0., 0., 1., 1.]], [[0., 0., 1., 0.5]])
    >>> round(float(m.result()), 3)
    0.5
    """

    def __init__(self, box_format: str = "xyxy", name: str = "iou", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.box_format = validate_box_format(box_format)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        iou, _ = iou_and_giou(y_true, y_pred, self.box_format)
        super().update_state(iou, sample_weight=sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "box_format": self.box_format}


@keras.saving.register_keras_serializable(package="mtl_keras")
class BoxHead(keras.layers.Layer):
    """Output layer of a `BoxRegression` task: always a valid box.

    Dense(4, sigmoid) keeps every coordinate in [0, 1]; in "xyxy" format the
    two corners are then sorted, so a served prediction never has x1 > x2 or
    y1 > y2 (the loss alone would accept swapped corners and leave them in
    the output). Computes in float32 under mixed precision.

    Args:
        box_format: see `to_xyxy`.

    Example:
    >>> import numpy as np
    >>> tuple(BoxHead(name="box")(np.ones((2, 3), "float32")).shape)
    (2, 4)
    """

    def __init__(self, box_format: str = "xyxy", **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.box_format = validate_box_format(box_format)
        self.dense = keras.layers.Dense(4, activation="sigmoid", dtype="float32", name="dense")

    def build(self, input_shape: Any) -> None:
        self.dense.build(input_shape)
        self.built = True

    def call(self, x: Any) -> Any:
        boxes = self.dense(tf.cast(x, tf.float32))
        if self.box_format != "xyxy":
            return boxes
        x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
        return tf.stack(
            [tf.minimum(x1, x2), tf.minimum(y1, y2), tf.maximum(x1, x2), tf.maximum(y1, y2)],
            axis=-1,
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*tuple(input_shape)[:-1], 4)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "box_format": self.box_format}
