"""One MultiWorkerMirroredStrategy worker of the multi-worker equality test
(run by `mtl_keras.distribute.launch`, TF_CONFIG set): the checks of
mw_checks.py, report in `<out>/equality<i>.json`.

    python mw_worker.py OUT_DIR name1,name2,... [--extras]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()

import mw_checks  # noqa: E402

out_dir, names = sys.argv[1], sys.argv[2].split(",")
index = int(os.environ["MTL_KERAS_WORKER"])
mw_checks.run(
    strategy, names, os.path.join(out_dir, f"equality{index}.json"), "--extras" in sys.argv[3:]
)
