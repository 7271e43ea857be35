"""Start-up: ``import unsup`` and the command line's parser import neither torch nor the optional libraries.

Each check runs in a fresh interpreter (``sys.modules`` of the test process
already holds torch).
"""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

import unsup
from unsup.cli import _names as _cli_names

HEAVY = ("torch", "onnx", "onnxruntime", "dask", "matplotlib")


def _modules_after(code):
    """The top-level names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


def test_import_unsup_and_the_non_neural_subpackages_leave_torch_unimported():
    loaded = _modules_after(
        "import unsup, unsup.cluster, unsup.mixture, unsup.metrics, unsup.quantization, unsup.cli\n"
        "from unsup import KMeans, GaussianMixture, Quantizer, QuantizedEmbedding, pairwise_distances"
    )
    assert "unsup" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_the_command_line_parser_imports_no_estimator_library():
    # ``unsup --help`` builds this parser: without scikit-learn, scipy and torch it starts in a fraction of a second
    loaded = _modules_after("import unsup.cli\nunsup.cli.build_parser()")
    assert not loaded & {"sklearn", "scipy", "torch", "pandas"}, loaded


def test_a_neural_estimator_imports_torch_when_asked_for():
    loaded = _modules_after("import unsup\nunsup.Autoencoder")
    assert "torch" in loaded


def test_lazy_names_are_the_subpackages_objects():
    from unsup.neural import (
        VAE,
        Autoencoder,
        AutoencoderEnsemble,
        VariationalAutoencoder,
    )

    assert unsup.Autoencoder is Autoencoder
    assert unsup.AutoencoderEnsemble is AutoencoderEnsemble
    assert unsup.VAE is VAE is VariationalAutoencoder
    assert unsup.neural is sys.modules["unsup.neural"]
    assert set(unsup.__all__) <= set(dir(unsup))
    for name in unsup.__all__:
        assert getattr(unsup, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Autoencoderr'"):
        unsup.Autoencoderr  # noqa: B018


def test_cli_choices_equal_the_registries():
    from unsup.metrics import METRIC_NAMES
    from unsup.quantization import OBSERVER_NAMES

    assert _cli_names.METRIC_NAMES == METRIC_NAMES
    assert _cli_names.OBSERVER_NAMES == OBSERVER_NAMES


def test_a_pickled_neural_estimator_loads_in_a_fresh_process_through_the_lazy_package(tmp_path):
    X = np.random.default_rng(0).standard_normal((64, 4))
    model = unsup.Autoencoder(
        n_components=2, hidden_layer_sizes=(8,), max_epochs=2, early_stopping=False, random_state=0
    ).fit(X)
    path = tmp_path / "ae.pkl"
    path.write_bytes(pickle.dumps(model))
    np.save(tmp_path / "X.npy", X)
    code = (
        "import pickle, numpy as np, unsup\n"
        f"m = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        "assert isinstance(m, unsup.Autoencoder)\n"
        f"print(repr(m.score_samples(np.load({str(tmp_path / 'X.npy')!r})).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    np.testing.assert_array_equal(np.array(json.loads(out.stdout)), model.score_samples(X))


def test_cluster_command_runs_without_torch(tmp_path):
    path = tmp_path / "points.csv"
    np.savetxt(path, np.random.default_rng(0).standard_normal((60, 3)), delimiter=",")
    loaded = _modules_after(
        "from unsup.cli import main\n"
        f"for a in ('kmeans', 'agglomerative', 'divisive', 'gmm'):\n"
        f"    assert main(['cluster', {str(path)!r}, '--n-clusters', '3', '--quiet', '--algorithm', a]) == 0"
    )
    assert "torch" not in loaded


def test_applying_a_saved_clustering_runs_without_torch(tmp_path):
    path = tmp_path / "points.csv"
    np.savetxt(path, np.random.default_rng(0).standard_normal((60, 3)), delimiter=",")
    model = tmp_path / "km.joblib"
    loaded = _modules_after(
        "from unsup.cli import main\n"
        f"assert main(['cluster', {str(path)!r}, '--n-clusters', '3', '-q', '--save-model', {str(model)!r}]) == 0\n"
        f"assert main(['apply', {str(model)!r}, {str(path)!r}, '-q']) == 0"
    )
    assert "torch" not in loaded

