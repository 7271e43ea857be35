"""Compress autoencoder latents to 8-, 4- and 1-bit codes, search them, compare memory and recall.

1. Wrap a small autoencoder (16-d latents) in a ``QuantizedEmbedding``:
   ``fit`` trains a clone of it on the standardised digits and calibrates
   8-bit codes on its latents.
2. Compress the same latents to 4-bit and 1-bit codes too.
3. Search the codes with ``kneighbors`` (each digit's 10 nearest neighbours
   among the others), with and without rescoring, and compare with the exact
   neighbours of the float latents: recall@10, memory, and how often the
   neighbours share the query's digit label.

Deterministic (``random_state`` everywhere); a few seconds on a quiet machine.
"""

import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from unsup.metrics import recall_at_k
from unsup.neural import Autoencoder
from unsup.quantization import QuantizedEmbedding

K = 10

digits = load_digits()
X = StandardScaler().fit_transform(digits.data).astype(np.float32)
y = digits.target

autoencoder = Autoencoder(16, hidden_layer_sizes=(64,), max_epochs=20, batch_size=128, random_state=0)

# QuantizedEmbedding(autoencoder) trains a clone of the autoencoder, then calibrates
# the codes on its latents. The latents, kept in embedding_, can also be compressed
# directly: encoder=None means the input already is the embedding.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the short training stops at max_epochs
    qe8 = QuantizedEmbedding(autoencoder, n_bits=8).fit(X)
latents = qe8.embedding_
models = {8: qe8}
models.update({n_bits: QuantizedEmbedding(n_bits=n_bits).fit(latents) for n_bits in (4, 1)})
assert np.array_equal(qe8.transform(X), qe8.quantizer_.transform(qe8.encoder_.transform(X)))

exact = NearestNeighbors(n_neighbors=K).fit(latents.astype(np.float64)).kneighbors()[1]


def recall(found):
    # unsup's recall@k: a found neighbour counts when it is within the exact K-th distance (ties count)
    return recall_at_k(latents, found)


def same_label(found):
    return np.mean(y[found] == y[:, None])


float_bytes = latents.astype(np.float32).nbytes
print(f"Autoencoder: 64 pixels -> {latents.shape[1]}-d latents, {len(X)} digits, "
      f"float32 latents take {float_bytes / 1024:.1f} KiB\n")
print(f"{'codes':30s} {'bytes/vector':>12s} {'ratio':>6s} {'recall@10':>10s} {'same digit':>11s}")
print(f"{'float32 (exact search)':30s} {4 * latents.shape[1]:12d} {1.0:6.1f} {1.0:10.3f} "
      f"{same_label(exact):11.3f}")
for n_bits, qe in models.items():
    for rescore in (False, True):
        found = qe.kneighbors(None, K, rescore=rescore)[1]
        label = f"{n_bits}-bit" + (", rescored" if rescore else ", no rescoring")
        print(f"{label:30s} {qe.codes_.shape[1]:12d} {qe.compression_ratio_:6.1f} "
              f"{recall(found):10.3f} {same_label(found):11.3f}")

print(f"\n8-bit codes of the first digit: {qe8.transform(X[:1])[0].tolist()}")
print("quantization error of the latents (MSE): "
      + ", ".join(f"{b}-bit {-m.score(X if m.encoder is not None else latents):.2e}"
                  for b, m in models.items()))
rec = qe8.reconstruct(X[:5])
print(f"reconstruction through the 8-bit codes: MSE {np.mean((rec - X[:5]) ** 2):.3f} "
      f"(the autoencoder alone: {np.mean((qe8.encoder_.inverse_transform(latents[:5]) - X[:5]) ** 2):.3f})")
held = {b: m.codes_.nbytes for b, m in models.items()}
print("\nmemory of the index: float32 " + f"{float_bytes / 1024:.1f} KiB; codes "
      + ", ".join(f"{b}-bit {v / 1024:.1f} KiB" for b, v in held.items())
      + f"; + {latents.nbytes / 1024:.1f} KiB of float latents when kept for rescoring (keep_float=True)")
print("Rescoring reranks rescore_multiplier x 10 candidates (4x at 8 bits, 10x at 4, 20x at 1)")
print("with the float latents kept in embedding_; keep_float=False keeps the codes alone.")
