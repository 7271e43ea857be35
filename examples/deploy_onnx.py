"""The course's deployment story end to end: train, quantize, export, serve.

1. train an Autoencoder (an anomaly detector and an encoder) on the digits;
2. post-training-quantize it to int8 weights (``quantize(X_calibration)``);
3. export both models to ONNX (``unsup.onnx.to_onnx``): one graph each, with
   the input scaling, the encoder, the decoder, the anomaly score and the
   fitted threshold inside;
4. run both graphs in onnxruntime, as a server or a device would, and print
   the file sizes, the agreement with unsup and the throughput.

Needs the extra ``unsup[onnx]`` (skl2onnx, onnx, onnxruntime). With
``UNSUP_EXAMPLES_FAST=1`` (as the tests run it) the training is shorter.
"""

import os
import tempfile
import time
import warnings

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from unsup.neural import Autoencoder
from unsup.onnx import to_onnx

FAST = os.environ.get("UNSUP_EXAMPLES_FAST") == "1"
warnings.filterwarnings("ignore", message=".*maximum number of epochs")

X, _ = load_digits(return_X_y=True)
X = X.astype(np.float32)
X_train, X_test = train_test_split(X, test_size=0.3, random_state=0)

# 1. train
ae = Autoencoder(8, hidden_layer_sizes=(128, 64), max_epochs=5 if FAST else 100, random_state=0)
ae.fit(X_train)
# 2. post-training quantization: int8 weights per output channel, calibrated activations
ae_int8 = ae.quantize(X_train[:500])

# 3. export
tmp = tempfile.TemporaryDirectory(prefix="unsup-onnx-")
folder = tmp.name
paths = {}
for name, model in (("float", ae), ("int8", ae_int8)):
    paths[name] = os.path.join(folder, f"autoencoder_{name}.onnx")
    with open(paths[name], "wb") as f:
        f.write(to_onnx(model, X_test[:1]).SerializeToString())

# 4. serve with onnxruntime
print(f"Autoencoder 64-128-64-8 on the digits ({len(X_train)} training rows, {len(X_test)} held out)")
print(f"{'model':<7}{'.onnx bytes':>12}{'code rel. err':>15}{'score rel. err':>16}{'same flags':>12}{'onnxruntime rows/s':>20}{'unsup rows/s':>14}")
sizes = {}
for name, model in (("float", ae), ("int8", ae_int8)):
    session = ort.InferenceSession(paths[name], providers=["CPUExecutionProvider"])
    code, reconstruction, score, flag = session.run(None, {"X": X_test})
    ref_code, ref_score, ref_flag = model.transform(X_test), model.score_samples(X_test), model.predict(X_test)
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    rows = np.tile(X_test, (20 if not FAST else 4, 1))
    t0 = time.perf_counter()
    session.run(["score_samples"], {"X": rows})
    t_ort = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.score_samples(rows)
    t_unsup = time.perf_counter() - t0
    sizes[name] = os.path.getsize(paths[name])
    print(
        f"{name:<7}{sizes[name]:>12,}{rel(code, ref_code):>15.1e}{rel(score, ref_score):>16.1e}"
        f"{np.mean(flag == ref_flag):>12.3f}{len(rows) / t_ort:>20,.0f}{len(rows) / t_unsup:>14,.0f}"
    )

print(f"\nint8 file / float file: {sizes['int8'] / sizes['float']:.2f}x")
Z, Z8 = ae.transform(X_test), ae_int8.transform(X_test)
print(f"int8 against float model: latent relative error {np.linalg.norm(Z8 - Z) / np.linalg.norm(Z):.4f}, "
      f"same anomaly flags on {np.mean(ae.predict(X_test) == ae_int8.predict(X_test)):.3f} of the rows")
print("(the int8 share shrinks with the layers: 0.28x for 784-512-256-32, see benchmarks/bench_onnx.py)")
tmp.cleanup()
