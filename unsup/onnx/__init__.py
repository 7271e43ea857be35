"""ONNX export of unsup's estimators (the optional extra ``unsup[onnx]``).

:func:`to_onnx` turns a fitted estimator, or a scikit-learn ``Pipeline``
mixing scikit-learn and unsup steps, into an ``onnx.ModelProto`` that
onnxruntime runs. Importing this module registers unsup's converters with
skl2onnx, so ``skl2onnx.to_onnx(pipeline, X)`` converts unsup steps too.

Outputs of each estimator's graph (first the one a following Pipeline step
consumes):

=======================  ====================================================
KMeans                   ``label`` (int64), ``distances`` (``transform``)
GaussianMixture          ``label``, ``probabilities`` (``predict_proba``),
                         ``score_samples``
AgglomerativeClustering  ``label`` (``predict``: the rule of the linkage)
DivisiveClustering       ``label`` (``predict``: descending the tree)
Quantizer                ``codes`` (``transform``), ``dequantized``
                         (``inverse_transform`` of the codes)
QuantizedEmbedding       ``codes`` and ``dequantized`` (the encoder inside the
                         graph); ``output="dequantized"`` puts that one first
Autoencoder, VAE         ``transform``, ``reconstruction`` (the
                         ``inverse_transform`` of the code), ``score_samples``,
                         ``predict`` (+1 / −1 with ``offset_``)
=======================  ====================================================

The input is float32 or float64, the dtype of ``X_sample``; float outputs
have the input's type. See ``docs/deployment.md`` for the tolerances.
"""

from __future__ import annotations

try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import skl2onnx
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"unsup.onnx needs skl2onnx, onnx and onnxruntime ({exc}). "
        'Install them with: pip install "unsup[onnx]"'
    ) from exc

import numpy as np

from unsup.onnx._converters import ExportError, register_converters

__all__ = ["ExportError", "register_converters", "to_onnx"]

register_converters()


def to_onnx(estimator, X_sample, *, target_opset=None):
    """The ONNX graph of a fitted estimator or Pipeline.

    Parameters
    ----------
    estimator : fitted estimator or sklearn.pipeline.Pipeline
        Any public unsup estimator, any estimator skl2onnx converts, or a
        Pipeline of them.
    X_sample : array-like of shape (n_samples, n_features)
        A few rows of input: their dtype (float32, or float64) and width fix
        the graph's input ``X``; other numeric dtypes become float32.
    target_opset : int, default=None
        The ONNX opset of the default domain; None is the newest that
        skl2onnx and onnx both support.

    Returns
    -------
    model : onnx.ModelProto

    Raises
    ------
    ExportError
        For an estimator or an option that has no faithful graph (a callable
        metric, ``Quantizer(dynamic=True)``, an unknown torch layer).

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from unsup import KMeans
    >>> from unsup.onnx import to_onnx
    >>> X = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    >>> km = KMeans(3, metric="manhattan", random_state=0).fit(X)
    >>> model = to_onnx(km, X[:1])
    >>> session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    >>> label, distances = session.run(None, {"X": X})
    >>> bool((label == km.predict(X)).all())
    True
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    X = np.asarray(X_sample)
    if X.ndim != 2:
        raise ValueError(f"X_sample must be 2-d (n_samples, n_features); got shape {X.shape}.")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X_sample has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{n_features} features as input."
        )
    return skl2onnx.to_onnx(estimator, X[:1], target_opset=target_opset)
