"""Builds tiny source models with the real frameworks, for the slow ``laser import`` tests. Runs in the
frameworks Python (``make frameworks-venv``), not laser's: ``python tests/frameworks_models.py OUT [tf|paddle|testdata]``.

tf: a seeded Keras CNN (conv, batch norm, pooling, dense) saved as ``cnn.keras``, ``cnn.h5``, a SavedModel
``cnn_savedmodel/`` (Keras' export) and ``cnn.tflite``; ``two_sigs/``, a SavedModel with two different
signatures; ``bessel/``, a SavedModel using an op tf2onnx has no conversion for (BesselI0e).
paddle: a seeded Paddle CNN saved as an inference model twice: ``pd_old/cnn.pdmodel`` (the pre-PIR program)
and ``pd_pir/cnn.json`` (Paddle 3's PIR program), each with ``cnn.pdiparams``.
Each model's own framework output on the inputs ``*_x.npy`` is saved as ``*_y.npy`` (the references).
testdata: builds both and keeps what OpenVINO reads (``cnn.tflite``, ``cnn_savedmodel/``, ``pd_old/cnn.pdmodel``
+ ``.pdiparams``) with the first two reference inputs/outputs: the committed ``tests/data/import/``, which the
default suite imports with OpenVINO, no framework installed (run once: ``python tests/frameworks_models.py
tests/data/import testdata``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build_tf(out: Path) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((16, 16, 3), name="image"), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(),
                          keras.layers.Conv2D(12, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(5, name="logits")])
    x = np.random.default_rng(1).standard_normal((6, 16, 16, 3)).astype(np.float32)
    bn = m.layers[1]  # non-trivial BatchNorm statistics, so a dropped BN would show
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, 8).astype(np.float32))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 8).astype(np.float32))
    m.save(out / "cnn.keras")
    m.save(out / "cnn.h5")
    m.export(str(out / "cnn_savedmodel"), verbose=False)
    (out / "cnn.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    np.save(out / "cnn_x.npy", x)
    np.save(out / "cnn_y.npy", m(x, training=False).numpy())

    class TwoSigs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def double(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": 2 * x}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def negate(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": -x}

    two = TwoSigs()
    tf.saved_model.save(two, str(out / "two_sigs"), signatures={"double": two.double, "negate": two.negate})

    class Bessel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.math.special.bessel_i0e(x) + 1.0}

    b = Bessel()
    tf.saved_model.save(b, str(out / "bessel"), signatures={"serving_default": b.serve})


PADDLE = """
import sys
import numpy as np
import paddle

paddle.seed(0)


class Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.c = paddle.nn.Conv2D(3, 8, 3)
        self.bn = paddle.nn.BatchNorm2D(8)
        self.c2 = paddle.nn.Conv2D(8, 12, 3)
        self.fc = paddle.nn.Linear(12, 5)

    def forward(self, x):
        y = paddle.nn.functional.relu(self.bn(self.c(x)))
        return self.fc(paddle.nn.functional.relu(self.c2(y)).mean([2, 3]))


net = Net()
net.bn._mean.set_value(np.linspace(-0.5, 0.5, 8).astype("float32"))
net.bn._variance.set_value(np.linspace(0.5, 2.0, 8).astype("float32"))
net.eval()
paddle.jit.save(net, sys.argv[1], input_spec=[paddle.static.InputSpec([None, 3, 16, 16], "float32", name="x")])
x = np.random.default_rng(1).standard_normal((6, 3, 16, 16)).astype(np.float32)
np.save(sys.argv[2] + "_x.npy", x)
np.save(sys.argv[2] + "_y.npy", net(paddle.to_tensor(x)).numpy())
"""


def build_paddle(out: Path) -> None:
    """Each program format in its own process: Paddle chooses it (FLAGS_enable_pir_api) at import. The
    script is a file, since paddle.jit.save reads the layer's source code."""
    script = out / "build_paddle.py"
    script.write_text(PADDLE)
    for sub, pir in (("pd_old", "0"), ("pd_pir", "1")):
        (out / sub).mkdir(exist_ok=True)
        env = {**os.environ, "FLAGS_enable_pir_api": pir, "GLOG_minloglevel": "3"}
        done = subprocess.run([sys.executable, str(script), str(out / sub / "cnn"), str(out / sub / "cnn")], env=env,
                              capture_output=True, text=True, timeout=600)
        if done.returncode:
            sys.exit(f"building the Paddle model failed: {done.stderr.strip()[-2000:]}")


KEEP = ("cnn.tflite", "cnn_savedmodel", "pd_old/cnn.pdmodel", "pd_old/cnn.pdiparams")


def build_testdata(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(tmp)
        build_tf(built)
        build_paddle(built)
        (out / "pd_old").mkdir(exist_ok=True)
        for rel in KEEP:
            if (built / rel).is_dir():
                shutil.copytree(built / rel, out / rel, dirs_exist_ok=True)
            else:
                shutil.copy(built / rel, out / rel)
        for prefix in ("cnn", "pd_old/cnn"):
            for end in ("_x.npy", "_y.npy"):
                np.save(out / f"{prefix}{end}", np.load(built / f"{prefix}{end}")[:2])


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    {"tf": build_tf, "paddle": build_paddle, "testdata": build_testdata}[sys.argv[2]](target)
