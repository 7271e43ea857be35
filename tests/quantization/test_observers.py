"""Observers: the registry, each range rule, granularities, streaming, and the outlier case."""

import numpy as np
import pytest
import torch

from unsup.quantization import (
    OBSERVER_NAMES,
    EntropyObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    calculate_qparams,
    fake_quantize,
    get_observer,
)
from unsup.quantization._observers import batch_minmax

rng = np.random.default_rng(0)
CLASSES = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "entropy": EntropyObserver,
}
# Small histograms keep the searches fast.
SMALL = {"percentile": {"bins": 512}, "mse": {"bins": 512, "n_candidates": 40}, "entropy": {"bins": 1024, "n_candidates": 40}}


def make(name, **config):
    return get_observer(name, **{**SMALL.get(name, {}), **config})


def squared_error(x, lo, hi, n_bits, scheme="symmetric"):
    s, z = calculate_qparams(lo, hi, n_bits=n_bits, scheme=scheme)
    return float(np.sum((x - fake_quantize(x, s, z, n_bits=n_bits, scheme=scheme)) ** 2))


def test_registry_names_resolve_to_classes():
    assert set(OBSERVER_NAMES) == set(CLASSES)
    for name, cls in CLASSES.items():
        assert type(get_observer(name)) is cls
    with pytest.raises(ValueError, match="Unknown observer 'max'"):
        get_observer("max")
    with pytest.raises(ValueError, match="observer must be one of"):
        get_observer(3)


def test_instance_keeps_its_own_parameters():
    obs = get_observer(PercentileObserver(percentile=99.0, bins=64), n_bits=4, granularity="per_channel")
    assert (obs.percentile, obs.bins, obs.n_bits, obs.granularity) == (99.0, 64, 4, "per_channel")
    assert "percentile=99.0" in repr(obs)


def test_minmax_streams_exact_running_range():
    obs = MinMaxObserver(scheme="asymmetric")
    assert obs.update(np.array([0.5, 2.0])) is not None
    obs.update(np.array([-1.0, 1.0]))
    lo, hi = obs.calculate_range()
    assert (lo, hi) == (-1.0, 2.0)
    s, z = obs.calculate_qparams()
    assert s == np.float32(3 / 255) and z == 85  # round(1 / (3/255))


def test_update_returns_input_unchanged():
    x = torch.linspace(-1, 1, 10)
    assert MinMaxObserver().update(x) is x


def test_moving_average_formula():
    obs = MovingAverageMinMaxObserver(averaging_constant=0.25)
    obs.update(np.array([-2.0, 4.0]))
    obs.update(np.array([-6.0, 8.0]))
    lo, hi = obs.calculate_range()
    assert lo == -2.0 + 0.25 * (-6.0 + 2.0) and hi == 4.0 + 0.25 * (8.0 - 4.0)


@pytest.mark.parametrize("name", OBSERVER_NAMES)
def test_unobserved_state_is_explicit(name):
    obs = make(name)
    assert not obs.observed
    assert obs.min_val == np.inf and obs.max_val == -np.inf
    with pytest.warns(UserWarning, match="has not observed any data"):
        s, z = obs.calculate_qparams()
    assert s == 1.0 and z == 0


@pytest.mark.parametrize("name", OBSERVER_NAMES)
def test_non_finite_batch_raises(name):
    x = rng.standard_normal(100)
    x[7] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        make(name).update(x)
    x[7] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        make(name, granularity="per_block", block_size=16).update(x)


def test_inconsistent_batches_raise():
    obs = MinMaxObserver(granularity="per_channel")
    obs.update(np.ones((3, 4)))
    with pytest.raises(ValueError, match="This batch has 5 ranges"):
        obs.update(np.ones((3, 5)))
    with pytest.raises(ValueError, match="empty batch"):
        obs.update(np.ones((0, 4)))
    with pytest.raises(ValueError, match="granularity"):
        MinMaxObserver(granularity="per_row")
    with pytest.raises(ValueError, match="percentile must be in"):
        PercentileObserver(percentile=120)
    with pytest.raises(ValueError, match="bins must be even"):
        MSEObserver(bins=101)


# ---------------------------------------------------------------- granularity


@pytest.mark.parametrize("name", OBSERVER_NAMES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_per_channel_any_axis_equals_per_tensor_of_each_channel(name, axis, scheme):
    x = rng.standard_normal((4, 5, 6)) * np.arange(1, 7)
    obs = make(name, granularity="per_channel", axis=axis, scheme=scheme)
    obs.update(x)
    s, z = obs.calculate_qparams()
    channels = np.moveaxis(x, axis, 0)
    assert s.shape == (len(channels),)
    for c, values in enumerate(channels):
        ref = make(name, scheme=scheme)
        ref.update(values)
        rs, rz = ref.calculate_qparams()
        assert s[c] == rs and z[c] == rz


@pytest.mark.parametrize("name", OBSERVER_NAMES)
@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_per_block_gathers_each_block_over_the_rows(name, scheme):
    x = rng.standard_normal((30, 10)) * np.arange(1, 11)
    obs = make(name, granularity="per_block", block_size=4, scheme=scheme)  # blocks of 4, 4, 2
    obs.update(x)
    s, z = obs.calculate_qparams()
    assert s.shape == (3,)
    for b, a in enumerate(range(0, 10, 4)):
        ref = make(name, scheme=scheme)
        ref.update(x[:, a : a + 4])
        rs, rz = ref.calculate_qparams()
        assert s[b] == rs and z[b] == rz


@pytest.mark.parametrize("name", ["minmax", "percentile", "mse"])
def test_per_sample_ranges_equal_one_observer_per_row(name):
    x = rng.standard_normal((7, 10)) * np.arange(1, 8)[:, None]
    obs = make(name, granularity="per_block", block_size=4, scheme="asymmetric")
    s, z = obs.per_sample_qparams(x)
    assert s.shape == (7, 3) and not obs.observed  # the observer itself is untouched
    for r in range(7):
        for b, a in enumerate(range(0, 10, 4)):
            lo, hi = x[r, a : a + 4].min(), x[r, a : a + 4].max()
            if name == "minmax":
                rs, rz = calculate_qparams(lo, hi, n_bits=8, scheme="asymmetric")
                assert s[r, b] == rs and z[r, b] == rz
            assert s[r, b] <= calculate_qparams(lo, hi, n_bits=8, scheme="asymmetric")[0]


# ------------------------------------------------------------ range selection


def test_streaming_histogram_widens_exactly():
    obs = PercentileObserver(percentile=100.0, bins=64)
    batches = [rng.uniform(0, 1, 500), rng.uniform(-30, 2, 500), rng.uniform(5, 90, 500)]
    for b in batches:
        obs.update(b)
    assert obs.histogram.sum() == 1500  # nothing lost while merging bins
    data = np.concatenate(batches)
    edges = obs.hist_lo[0] + obs.hist_width[0] * np.arange(65)
    np.testing.assert_array_equal(obs.histogram[0], np.histogram(data, edges)[0])
    lo, hi = obs.calculate_range()
    assert (lo, hi) == (data.min(), data.max())


def test_percentile_matches_numpy_within_a_bin():
    x = rng.standard_normal(50_000)
    obs = PercentileObserver(percentile=99.0, bins=2048)
    obs.update(x)
    lo, hi = obs.calculate_range()
    width = (x.max() - x.min()) / 2048
    assert abs(hi - np.percentile(x, 99.0)) < width and abs(lo - np.percentile(x, 1.0)) < width


def test_outlier_case_percentile_recovers_the_inliers():
    """The course's case: values within ±50 and a rare 1000."""
    inliers = rng.uniform(-50, 50, 9_999)
    x = np.append(inliers, 1000.0)
    errors = {}
    for name in ("minmax", "percentile"):
        obs = get_observer(name)
        obs.update(x)
        s, z = obs.calculate_qparams()
        errors[name] = np.mean((inliers - fake_quantize(inliers, s, z)) ** 2)
    assert errors["percentile"] * 10 <= errors["minmax"]
    assert errors["minmax"] > 4.0  # s = 1000/127: s²/12 ≈ 5.2


DATASETS = {
    "gaussian": rng.standard_normal(20_000),
    "laplace": rng.laplace(size=20_000),
    "uniform": rng.uniform(-3, 1, 20_000),
    "outliers": np.where(rng.uniform(size=20_000) < 0.001, 100.0, 1.0) * rng.standard_normal(20_000),
    "one_outlier": np.append(rng.uniform(-50, 50, 9_999), 1000.0),
}


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("n_bits", [4, 8])
@pytest.mark.parametrize("data", list(DATASETS))
def test_mse_never_worse_than_minmax_or_percentile(data, n_bits, scheme):
    x = DATASETS[data]
    errors = {}
    for name in ("minmax", "percentile", "mse"):
        obs = get_observer(name, n_bits=n_bits, scheme=scheme)
        obs.update(x)
        errors[name] = squared_error(x, *obs.calculate_range(), n_bits, scheme)
    assert errors["mse"] <= errors["minmax"] * (1 + 1e-12)
    assert errors["mse"] <= errors["percentile"] * (1 + 1e-12)


def test_mse_clips_gaussian_tails_at_4_bits():
    x = DATASETS["gaussian"]
    obs = MSEObserver(n_bits=4)
    obs.update(x)
    lo, hi = obs.calculate_range()
    assert 1.5 < hi < 3.5 < x.max()  # the known optimum for 4 bits is near 2.5σ


def test_entropy_clips_heavy_tails_and_keeps_uniform():
    x = DATASETS["laplace"]
    obs = EntropyObserver(n_bits=4)
    obs.update(x)
    lo, hi = obs.calculate_range()
    assert max(-lo, hi) < 0.7 * np.abs(x).max()  # the symmetric threshold clips the tails
    uniform = EntropyObserver()
    uniform.update(DATASETS["uniform"])
    lo, hi = uniform.calculate_range()
    assert lo < -2.7  # a uniform distribution keeps (nearly) all its range


def test_entropy_has_no_per_sample_ranges():
    with pytest.raises(ValueError, match="does not compute per-sample ranges"):
        EntropyObserver().per_sample_qparams(np.ones((3, 4)))


def test_observer_base_is_exported_for_custom_observers():
    class Fixed(Observer):
        def _update_stats(self, x, min_val, max_val, per_sample):
            self.min_val, self.max_val = np.asarray(-1.0), np.asarray(1.0)

        def _range(self):
            return self.min_val, self.max_val

    obs = get_observer(Fixed(), n_bits=4)
    obs.update(np.ones(3))
    s, z = obs.calculate_qparams()
    assert s == np.float32(1 / 7) and z == 0


@pytest.mark.parametrize(
    "granularity, axis", [("per_tensor", -1), ("per_channel", -1), ("per_channel", 0), ("per_channel", 1),
                          ("per_block", -1)]
)
@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver])
def test_observers_fold_torch_batches_as_numpy_ones(cls, granularity, axis):
    """batch_range + combine on tensors (a range held outside the observer, as a module's
    buffers) give the ranges that update() gives on the same batches as arrays."""
    g = np.random.default_rng(3)
    batches = [g.standard_normal((7, 5, 10)) * (i + 1) for i in range(4)]
    config = dict(granularity=granularity, axis=axis, block_size=4)
    if cls is MovingAverageMinMaxObserver:
        config["averaging_constant"] = 0.3
    reference = cls(**config)
    observer = cls(**config)
    lo, hi = torch.tensor(np.inf, dtype=torch.float64), torch.tensor(-np.inf, dtype=torch.float64)
    for batch in batches:
        reference.update(batch)
        b_lo, b_hi = observer.batch_range(torch.from_numpy(batch))
        np.testing.assert_array_equal(np.stack([b_lo, b_hi]), np.stack(batch_minmax(batch, granularity, axis, 4)))
        lo, hi = observer.combine(lo, hi, b_lo, b_hi)
    assert not observer.observed  # its own state is untouched
    np.testing.assert_array_equal(lo.numpy(), reference.min_val)
    np.testing.assert_array_equal(hi.numpy(), reference.max_val)
