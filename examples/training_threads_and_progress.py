"""Training a small autoencoder on a busy machine: the threads it uses, its progress, its one warning.

- ``n_jobs=None`` (the default) trains a network this small on one torch
  thread; the script times it against torch's own thread count
  (``n_jobs=torch.get_num_threads()``), which is what a fit used before
  ``n_jobs`` existed, and shows that torch's setting is the same after both;
- ``verbose=1`` prints epoch i/N, the loss, the validation loss and an ETA;
- a fit that runs out of ``max_epochs`` with early stopping on warns once;
  ``early_stopping=False`` makes ``max_epochs`` the budget, without a warning.

``UNSUP_EXAMPLES_FAST=1`` (set by the tests) trains fewer epochs on fewer rows.

Run: ``python examples/training_threads_and_progress.py``
"""

import os
import time
import warnings

import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from unsup.neural import Autoencoder

FAST = os.environ.get("UNSUP_EXAMPLES_FAST") == "1"
X = load_digits().data[:200] if FAST else load_digits().data
EPOCHS = 2 if FAST else 30

threads_before = torch.get_num_threads()
print(f"torch's intra-op threads in this process: {threads_before}")
for n_jobs in (threads_before, None):
    model = Autoencoder(n_components=8, max_epochs=EPOCHS, early_stopping=False, n_jobs=n_jobs, random_state=0)
    t0 = time.perf_counter()
    model.fit(X)
    print(f"  fit with n_jobs={n_jobs!s:>4}: {time.perf_counter() - t0:6.2f} s, "
          f"torch's threads afterwards: {torch.get_num_threads()}")

print("\nverbose=1 (stdout):")
Autoencoder(n_components=8, max_epochs=EPOCHS, early_stopping=False, verbose=1, random_state=0).fit(X)

print("\nmax_epochs reached with early stopping on, then with early_stopping=False:")
for early_stopping in (True, False):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Autoencoder(n_components=8, max_epochs=2, early_stopping=early_stopping, random_state=0).fit(X)
    convergence = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    print(f"  early_stopping={early_stopping}: {len(convergence)} ConvergenceWarning"
          + (f" ({convergence[0].message})" if convergence else ""))
