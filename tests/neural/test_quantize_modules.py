"""PTQ and QAT building blocks (unsup.quantization.nn) on plain torch modules.

Oracles: torch's own ``fake_quantize_per_channel_affine`` and
``quantize_per_channel`` (core torch, not torch.ao), and the library's
observers fed the same data.
"""

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from torch.nn import functional as F

from unsup.quantization.nn import (
    QAT_DEFAULTS,
    FakeQuantLinear,
    LatentFakeQuantize,
    QuantizedLinear,
    check_qat,
    model_size_bytes,
    prepare_qat,
    quantize_model,
    quantized_structure,
)
from unsup.quantization import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PercentileObserver,
    calculate_qparams,
)


def _mlp(sizes, gen, *, dropout=0.0):
    """A ReLU MLP whose weights come from ``gen`` (torch's global stream untouched)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.utils.skip_init(torch.nn.Linear, a, b)
        bound = 1.0 / np.sqrt(a)
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=gen)
            lin.bias.uniform_(-bound, bound, generator=gen)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
            if dropout:
                layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers)


class TwoHeads(torch.nn.Module):
    """A VAE-like encoder: a body, then a mean head and a log-variance head."""

    def __init__(self, gen):
        super().__init__()
        self.body = _mlp([6, 16, 12], gen)
        self.act = torch.nn.ReLU()
        self.mean = _mlp([12, 3], gen)[0]
        self.logvar = _mlp([12, 3], gen)[0]

    def forward(self, x):
        h = self.act(self.body(x))
        return self.mean(h), self.logvar(h)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=_gen(seed))


def _sym_scale(w, n_bits):
    """Per-row symmetric min-max scales by hand: max |w_i.| / (2**(n-1) - 1), as float32."""
    qmax = 2 ** (n_bits - 1) - 1
    return np.maximum(np.abs(w.detach().double().numpy()).max(axis=1) / qmax, np.finfo(np.float32).eps).astype(
        np.float32
    )


# ---------------------------------------------------------------- check_qat


def test_check_qat_none_and_defaults():
    assert check_qat(None) is None
    assert check_qat({}) == QAT_DEFAULTS
    given = {"n_bits": np.int64(4), "latent": np.bool_(False)}
    config = check_qat(given)
    assert config == {**QAT_DEFAULTS, "n_bits": 4, "latent": False}
    assert type(config["n_bits"]) is int and type(config["latent"]) is bool
    assert given == {"n_bits": 4, "latent": False}  # the input is not modified
    assert check_qat(config) == config  # idempotent


@pytest.mark.parametrize(
    "qat, match",
    [
        ([("n_bits", 4)], "must be None or a dict"),
        (4, "must be None or a dict"),
        ("int4", "must be None or a dict"),
        ({"bits": 4}, r"unknown key\(s\) \['bits'\]"),
        ({"n_bits": 0}, r"'n_bits' an int in the range \[1, 8\]"),
        ({"n_bits": 9}, r"'n_bits' an int in the range \[1, 8\]"),
        ({"n_bits": 4.0}, r"'n_bits' an int in the range \[1, 8\]"),
        ({"n_bits": True}, r"'n_bits' an int in the range \[1, 8\]"),
        ({"latent": "yes"}, "'latent' a bool"),
        ({"weights": 1}, "'weights' a bool"),
        ({"scheme": "affine"}, "'scheme' one of"),
        ({"observer": "percentile"}, "histogram observers"),
        ({"observer": "median"}, "'observer' one of"),
        ({"averaging_constant": 0.0}, r"'averaging_constant' a float in \(0, 1\]"),
        ({"averaging_constant": 1.5}, r"'averaging_constant' a float in \(0, 1\]"),
        ({"n_bits": 1}, "n_bits' >= 2 for symmetric codes"),
        ({"n_bits": 1, "weights": False, "scheme": "symmetric"}, "n_bits' >= 2 for symmetric codes"),
    ],
)
def test_check_qat_rejects_bad_configs_in_sklearn_words(qat, match):
    with pytest.raises(InvalidParameterError, match=match) as info:
        check_qat(qat, caller="Autoencoder")
    message = str(info.value)
    assert message.startswith("The 'qat' parameter of Autoencoder ")
    assert message.endswith(f"Got {qat!r} instead.")
    assert isinstance(info.value, ValueError)


def test_check_qat_one_bit_latent_without_weights():
    config = check_qat({"n_bits": 1, "weights": False})
    assert config["n_bits"] == 1 and config["scheme"] == "asymmetric"


# ------------------------------------------------------- weight fake quant


@pytest.mark.parametrize(
    "scheme, n_bits",
    [("symmetric", 2), ("symmetric", 4), ("symmetric", 8), ("asymmetric", 1), ("asymmetric", 4), ("asymmetric", 8)],
)
def test_calculate_qparams_on_tensors_equals_the_numpy_core(scheme, n_bits):
    # random ranges, plus zero ranges, tiny ones, one-signed ones and a repeating fraction
    edges_lo = torch.tensor([0.0, 0.0, -1e-30, 2.0, -7.0, -3.0, 1.0 / 3])
    edges_hi = torch.tensor([0.0, 1e-30, 0.0, 5.0, -1.0, 3.0, 1.0 / 3])
    lo = torch.cat([_randn(50, seed=1) * 10 - 2, edges_lo])
    hi = torch.cat([lo[:50] + _randn(50, seed=2).abs() * 20, edges_hi])
    for dtype in (torch.float32, torch.float64):
        lo_d, hi_d = lo.to(dtype), hi.to(dtype)
        scale, zero_point = calculate_qparams(lo_d, hi_d, n_bits=n_bits, scheme=scheme)
        ref_s, ref_z = calculate_qparams(
            lo_d.double().numpy(), hi_d.double().numpy(), n_bits=n_bits, scheme=scheme
        )
        assert scale.dtype == torch.float32 and zero_point.dtype == torch.int32
        np.testing.assert_array_equal(scale.numpy(), ref_s)
        np.testing.assert_array_equal(zero_point.numpy(), ref_z)


@pytest.mark.parametrize("n_bits", [2, 4, 8])
def test_fake_quant_linear_forward_equals_torch_per_channel(n_bits):
    lin = _mlp([7, 5], _gen(1))[0]
    fq = FakeQuantLinear.from_linear(lin, n_bits=n_bits)
    x = _randn(11, 7)
    scale = torch.from_numpy(_sym_scale(lin.weight, n_bits))
    qmax = 2 ** (n_bits - 1) - 1
    w_ref = torch.fake_quantize_per_channel_affine(
        lin.weight.detach(), scale, torch.zeros(5, dtype=torch.int32), 0, -qmax, qmax
    )
    torch.testing.assert_close(fq.quantized_weight().detach(), w_ref, rtol=0, atol=0)
    torch.testing.assert_close(fq(x), F.linear(x, w_ref, lin.bias), rtol=0, atol=0)
    # every row holds at most 2**n - 1 levels, the extreme ones at ±max|w|
    for row, s in zip(fq.quantized_weight().detach(), scale):
        codes = torch.round(row / s)
        assert codes.abs().max() == qmax and len(torch.unique(codes)) <= 2 * qmax + 1


def test_fake_quant_linear_gradient_is_straight_through():
    lin = _mlp([6, 4], _gen(2))[0]
    fq = FakeQuantLinear.from_linear(copy.deepcopy(lin), n_bits=3)
    x = _randn(9, 6).requires_grad_()
    target = _randn(9, 4, seed=1)
    ((fq(x) - target) ** 2).sum().backward()
    # Oracle: the same loss with the quantized weight as a leaf: d/dW = d/dŴ.
    w_hat = fq.quantized_weight().detach().requires_grad_()
    b = lin.bias.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    ((F.linear(x2, w_hat, b) - target) ** 2).sum().backward()
    torch.testing.assert_close(fq.weight.grad, w_hat.grad)
    torch.testing.assert_close(fq.bias.grad, b.grad)
    torch.testing.assert_close(x.grad, x2.grad)


def test_prepare_qat_replaces_every_linear_and_keeps_the_parameters():
    net = torch.nn.Sequential(_mlp([6, 8, 4], _gen()), torch.nn.Tanh(), _mlp([4, 6], _gen(1)), TwoHeads(_gen(2)))
    params = list(net.parameters())
    names_before = [name for name, _ in net.named_parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)  # built before prepare_qat
    out = prepare_qat(net, {"n_bits": 4})
    assert out is net
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 7 and all(type(m) is FakeQuantLinear and m.n_bits == 4 for m in linears)
    assert all(a is b for a, b in zip(net.parameters(), params))
    assert [name for name, _ in net.named_parameters()] == names_before
    assert isinstance(net[1], torch.nn.Tanh) and isinstance(net[3].act, torch.nn.ReLU)
    # the optimiser built before still trains the fake-quantized model
    before = [p.detach().clone() for p in params]
    mean, logvar = net(_randn(5, 6))
    (mean.sum() + logvar.sum()).backward()
    optimizer.step()
    assert all(not torch.equal(a, p.detach()) for a, p in zip(before, params))
    # idempotent: a second call does not wrap again
    prepare_qat(net, {"n_bits": 4})
    assert all(type(m) is FakeQuantLinear for m in net.modules() if isinstance(m, torch.nn.Linear))


def test_prepare_qat_leaves_the_module_alone_without_weight_qat():
    net = _mlp([4, 3, 2], _gen())
    for config in [None, {"weights": False}]:
        assert prepare_qat(net, config) is net
        assert all(type(m) is torch.nn.Linear for m in net.modules() if isinstance(m, torch.nn.Linear))
    lin = _mlp([4, 3], _gen())[0]
    replaced = prepare_qat(lin, {"n_bits": 8})  # a bare Linear: use the return value
    assert type(replaced) is FakeQuantLinear and replaced.weight is lin.weight
    with pytest.raises(InvalidParameterError):
        prepare_qat(net, {"n_bits": 12})


def test_fake_quant_linear_constructor_and_repr():
    layer = FakeQuantLinear(3, 2, bias=False, n_bits=4)
    assert layer.bias is None and "n_bits=4" in repr(layer)
    assert layer(torch.zeros(1, 3)).shape == (1, 2)
    with pytest.raises(ValueError, match="n_bits"):
        FakeQuantLinear(3, 2, n_bits=11)
    with pytest.raises(ValueError, match="symmetric"):
        FakeQuantLinear(3, 2, n_bits=1)


# ------------------------------------------------------- latent fake quant


def _batches(n=5, d=4):
    scales = torch.tensor([0.1, 1.0, 10.0, 3.0])[:d]
    return [_randn(16, d, seed=i) * scales + i * 0.1 for i in range(n)]


@pytest.mark.parametrize(
    "observer, oracle",
    [("moving_average", MovingAverageMinMaxObserver), ("minmax", MinMaxObserver)],
)
@pytest.mark.parametrize("scheme", ["asymmetric", "symmetric"])
def test_latent_fake_quantize_tracks_the_core_observer(observer, oracle, scheme):
    config = {"n_bits": 4, "scheme": scheme, "observer": observer, "averaging_constant": 0.3}
    fq = LatentFakeQuantize(config)
    kwargs = {"averaging_constant": 0.3} if observer == "moving_average" else {}
    ref = oracle(4, scheme=scheme, granularity="per_channel", axis=-1, **kwargs)
    for z in _batches():
        out = fq(z)
        ref.update(z.numpy())
        np.testing.assert_array_equal(fq.min_val.numpy(), ref.min_val)
        np.testing.assert_array_equal(fq.max_val.numpy(), ref.max_val)
        # the output is torch's per-channel fake quantization with these qparams
        scale, zero_point = fq.qparams()
        qmin, qmax = (0, 15) if scheme == "asymmetric" else (-7, 7)
        expected = torch.fake_quantize_per_channel_affine(
            z, torch.from_numpy(scale), torch.from_numpy(zero_point), 1, qmin, qmax
        )
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        assert len(torch.unique(out[:, 1])) <= 16


def test_latent_fake_quantize_freezes_in_eval_mode():
    fq = LatentFakeQuantize({"n_bits": 4})
    for z in _batches():
        fq(z)
    lo, hi = fq.min_val.clone(), fq.max_val.clone()
    fq.eval()
    wide = _randn(32, 4) * 100
    first = fq(wide)
    torch.testing.assert_close(fq(wide), first, rtol=0, atol=0)  # deterministic
    assert torch.equal(fq.min_val, lo) and torch.equal(fq.max_val, hi)
    # a value beyond the frozen range saturates at its end
    scale, zero_point = fq.qparams()
    top = (15 - zero_point) * scale.astype(np.float64)
    np.testing.assert_allclose(first.max(dim=0).values.numpy(), top, rtol=1e-6)


def test_latent_fake_quantize_gradient_is_straight_through_and_masked():
    fq = LatentFakeQuantize({"n_bits": 3, "observer": "minmax"})
    fq(_batches(1)[0])
    fq.eval()
    z = (_randn(20, 4, seed=7) * torch.tensor([0.2, 2.0, 20.0, 6.0])).requires_grad_()
    fq(z).pow(2).sum().backward()
    scale, zero_point = fq.qparams()
    z2 = z.detach().clone().requires_grad_()
    torch.fake_quantize_per_channel_affine(
        z2, torch.from_numpy(scale), torch.from_numpy(zero_point), 1, 0, 7
    ).pow(2).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad, rtol=0, atol=0)
    inside = z.grad != 0
    assert inside.any() and (~inside).any()  # some saturate (gradient 0), most pass


def test_latent_fake_quantize_state_dict_pickle_and_shapes():
    fq = LatentFakeQuantize({"n_bits": 6})
    for z in _batches():
        fq(z)
    fq.eval()
    z = _randn(8, 4, seed=3) * 3
    out = fq(z)
    # a fresh module, built without n_features, takes the saved range
    fresh = LatentFakeQuantize({"n_bits": 6}).eval()
    buffer = io.BytesIO()
    torch.save(fq.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(fresh(z), out, rtol=0, atol=0)
    for clone in [copy.deepcopy(fq), pickle.loads(pickle.dumps(fq))]:
        torch.testing.assert_close(clone(z), out, rtol=0, atol=0)
    # codes of any rank: features on the last axis
    z3 = _randn(2, 8, 4, seed=4)
    torch.testing.assert_close(fq(z3).reshape(-1, 4), fq(z3.reshape(-1, 4)), rtol=0, atol=0)
    sized = LatentFakeQuantize(None, n_features=4)
    assert sized.min_val.shape == (4,) and not sized.observed and sized.n_bits == 8
    assert "n_bits=6" in repr(fq)


def test_latent_fake_quantize_errors():
    with pytest.raises(RuntimeError, match="has not observed any batch"):
        LatentFakeQuantize({"n_bits": 4}).eval()(torch.zeros(2, 3))
    fq = LatentFakeQuantize({"n_bits": 4}, n_features=3)
    with pytest.raises(ValueError, match="set up for 3 features; got a code with 5"):
        fq(torch.zeros(2, 5))
    fq(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="set up for 3 features"):
        fq(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN or infinity.*learning_rate"):
        fq(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(InvalidParameterError):
        LatentFakeQuantize({"n_bits": 0})


# -------------------------------------------------- post-training quantization


def _layer_inputs(net, X):
    """The input of every Linear of a Sequential MLP, computed by slicing the net."""
    inputs = []
    with torch.no_grad():
        for i, layer in enumerate(net):
            if isinstance(layer, torch.nn.Linear):
                inputs.append(net[:i](X) if i else X)
    return inputs


@pytest.mark.parametrize("n_bits", [8, 4])
@pytest.mark.parametrize("granularity", ["per_channel", "per_tensor"])
def test_quantize_model_equals_torch_reference(n_bits, granularity):
    net = _mlp([6, 12, 5, 3], _gen(4))
    X = _randn(64, 6) * torch.tensor([1.0, 5.0, 0.1, 1.0, 2.0, 30.0])
    q = quantize_model(net, X, n_bits=n_bits, granularity=granularity, outliers="saturate")
    qlayers = [m for m in q if isinstance(m, QuantizedLinear)]
    assert len(qlayers) == 3 and isinstance(q[1], torch.nn.ReLU) and not q.training
    qmax = 2 ** (n_bits - 1) - 1
    for lin, qlin, inputs in zip([m for m in net if isinstance(m, torch.nn.Linear)], qlayers, _layer_inputs(net, X)):
        # weights: the codes of torch's per-channel fake quantization with the min-max scales
        scale = torch.from_numpy(_sym_scale(lin.weight, n_bits))
        w_ref = torch.fake_quantize_per_channel_affine(
            lin.weight.detach(), scale, torch.zeros(len(scale), dtype=torch.int32), 0, -qmax, qmax
        )
        codes = torch.round(w_ref / scale[:, None]).to(torch.int8)
        assert qlin.weight_codes.dtype == torch.int8
        assert torch.equal(qlin.weight_codes, codes) and int(codes.abs().max()) == qmax
        assert torch.equal(qlin.weight_scale, scale)
        torch.testing.assert_close(qlin.weight, codes.float() * scale[:, None], rtol=0, atol=0)
        # activations: the min-max range of the layer's input, asymmetric
        a = inputs.double().numpy()
        if granularity == "per_channel":
            s, z = calculate_qparams(a.min(axis=0), a.max(axis=0), n_bits=n_bits, scheme="asymmetric")
            x_hat = torch.fake_quantize_per_channel_affine(
                inputs, torch.from_numpy(s), torch.from_numpy(z), 1, 0, 2**n_bits - 1
            )
        else:
            s, z = calculate_qparams(a.min(), a.max(), n_bits=n_bits, scheme="asymmetric")
            x_hat = torch.fake_quantize_per_tensor_affine(inputs, float(s), int(z), 0, 2**n_bits - 1)
        np.testing.assert_array_equal(qlin.input_scale.numpy(), s)
        np.testing.assert_array_equal(qlin.input_zero_point.numpy(), z)
        assert qlin.input_zero_point.dtype == torch.uint8
        torch.testing.assert_close(
            qlin(inputs), F.linear(x_hat, codes.float() * scale[:, None], lin.bias.detach()), rtol=0, atol=0
        )
    with torch.no_grad():
        out = q(X)
        torch.testing.assert_close(q(X), out, rtol=0, atol=0)  # deterministic


def test_linears_next_to_feature_maps_have_one_range_per_map_channel():
    # A Linear reading a flattened (3, 2, 2) map (input_channels=3) gets one input range per map
    # channel; one whose 8 outputs are unflattened into 2 maps (output_channels=2) one weight scale
    # per map, each shared by that channel's consecutive features (C order)
    n_bits, qmax = 8, 127
    net = _mlp([12, 8, 8], _gen(5))
    net[0].input_channels = 3
    net[2].output_channels = 2
    X = _randn(64, 12) * torch.arange(1.0, 13.0)
    q = quantize_model(net, X, n_bits=n_bits, outliers="saturate")
    first, second = q[0], q[2]
    assert first.input_scale.shape == (3,) and first.weight_scale.shape == (8,)
    assert second.input_scale.shape == (8,) and second.weight_scale.shape == (2,)
    # input ranges: min-max over each map channel's 4 features, asymmetric
    a = X.double().numpy().reshape(64, 3, 4)
    s, z = calculate_qparams(a.min(axis=(0, 2)), a.max(axis=(0, 2)), n_bits=n_bits, scheme="asymmetric")
    np.testing.assert_array_equal(first.input_scale.numpy(), s)
    np.testing.assert_array_equal(first.input_zero_point.numpy(), z)
    x_hat = torch.fake_quantize_per_channel_affine(
        X, torch.from_numpy(np.repeat(s, 4)), torch.from_numpy(np.repeat(z, 4)), 1, 0, 255
    )
    torch.testing.assert_close(first(X), F.linear(x_hat, first.weight, net[0].bias.detach()), rtol=0, atol=0)
    # weight scales: symmetric min-max over each map's 4 rows
    w = net[2].weight.detach()
    scale = torch.from_numpy(_sym_scale(w.reshape(2, -1), n_bits)).repeat_interleave(4)
    codes = torch.round(w / scale[:, None]).clamp(-qmax, qmax).to(torch.int8)
    assert torch.equal(second.weight_codes, codes)
    torch.testing.assert_close(second.weight, codes.float() * scale[:, None], rtol=0, atol=0)
    # the layout survives pickling and quantized_structure
    again = pickle.loads(pickle.dumps(q))
    torch.testing.assert_close(again(X), q(X), rtol=0, atol=0)
    restored = quantized_structure(net, outliers="saturate")
    restored.load_state_dict(q.state_dict())
    torch.testing.assert_close(restored(X), q(X), rtol=0, atol=0)
    # a QuantizedLinear pickled before these layouts existed loads as per feature
    old = QuantizedLinear.from_linear(net[0], input_scale=0.1, input_zero_point=3)
    del old.input_channels, old.output_channels
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.input_channels is None and loaded.output_channels is None
    torch.testing.assert_close(loaded(X), old(X), rtol=0, atol=0)
    with pytest.raises(ValueError, match="input_channels must be a positive int that divides in_features=12"):
        QuantizedLinear(12, 8, input_channels=5)
    with pytest.raises(ValueError, match="output_channels must be a positive int that divides out_features=8"):
        QuantizedLinear(12, 8, output_channels=0)


def test_quantize_model_does_not_modify_its_input():
    net = torch.nn.Sequential(_mlp([6, 8, 4], _gen()), torch.nn.Dropout(0.5))
    net.train()
    state = copy.deepcopy(net.state_dict())
    q = quantize_model(net, _randn(20, 6))
    assert net.training and type(net[0][0]) is torch.nn.Linear
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert not q.training and isinstance(q[1], torch.nn.Dropout) and type(q[0][0]) is QuantizedLinear
    assert list(q.parameters()) == []


def test_outliers_pass_in_float_or_saturate():
    lin = _mlp([3, 2], _gen())[0]
    X = _randn(100, 3)
    q_float = quantize_model(lin, X, outliers="float")
    q_sat = quantize_model(lin, X, outliers="saturate")
    assert type(q_float) is QuantizedLinear  # a bare Linear is replaced
    with torch.no_grad():
        # inside the calibrated range both quantize the same way
        torch.testing.assert_close(q_float(X), q_sat(X), rtol=0, atol=0)
        x = X[:4].clone()
        x[1, 2] = 50.0 * X[:, 2].abs().max()  # far beyond the calibrated range
        x_float, x_sat = q_float.quantize_input(x), q_sat.quantize_input(x)
        assert x_float[1, 2] == x[1, 2]  # passed on in float
        assert x_sat[1, 2] < X[:, 2].max() + q_sat.input_scale[2]  # saturated
        mask = torch.ones_like(x, dtype=torch.bool)
        mask[1, 2] = False
        torch.testing.assert_close(x_float[mask], x_sat[mask], rtol=0, atol=0)
        torch.testing.assert_close(q_float(x), F.linear(x_float, q_float.weight, q_float.bias), rtol=0, atol=0)
    # an error inside the range never exceeds one step, so nothing of X takes the float path
    s = q_float.input_scale
    assert bool(((q_sat.quantize_input(X) - X).abs() <= s).all())


def test_quantize_model_two_heads_and_custom_forward():
    enc = TwoHeads(_gen(5))
    X = _randn(50, 6, seed=5)
    q = quantize_model(enc, X)
    assert {type(m).__name__ for m in q.modules()} >= {"QuantizedLinear", "ReLU"}
    assert type(q.mean) is QuantizedLinear and type(q.logvar) is QuantizedLinear
    with torch.no_grad():
        (m, lv), (mq, lvq) = enc(X), q(X)
    assert float((mq - m).norm() / m.norm()) < 0.02 and float((lvq - lv).norm() / lv.norm()) < 0.02
    # a forward that skips a head leaves it uncalibrated: a clear error
    with pytest.raises(ValueError, match=r"did not reach the Linear layer\(s\) \['logvar'\]"):
        quantize_model(enc, X, forward=lambda model, x: model.mean(model.act(model.body(x))))
    # ... and a forward that runs it is used as given
    calls = []

    def forward(model, x):
        calls.append(len(x))
        return model(x)

    quantize_model(enc, X, forward=forward, batch_size=16)
    assert calls == [16, 16, 16, 2]


def test_quantize_a_qat_model():
    config = check_qat({"n_bits": 4})
    net = torch.nn.Sequential(_mlp([6, 8, 3], _gen(6)), LatentFakeQuantize(config), _mlp([3, 8, 6], _gen(7)))
    prepare_qat(net, config)
    X = _randn(40, 6, seed=6)
    net(X)  # train mode: the latent range is observed
    net.eval()
    q = quantize_model(net, X, n_bits=4)
    assert isinstance(q[1], LatentFakeQuantize) and torch.equal(q[1].min_val, net[1].min_val)
    fq_layers = [m for m in net.modules() if isinstance(m, FakeQuantLinear)]
    q_layers = [m for m in q.modules() if isinstance(m, QuantizedLinear)]
    assert len(fq_layers) == len(q_layers) == 4
    for fq, ql in zip(fq_layers, q_layers):  # the QAT grid is exactly the integer grid
        torch.testing.assert_close(ql.weight, fq.quantized_weight().detach(), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_bits": 1}, r"n_bits must be an int in the range \[2, 8\]"),
        ({"n_bits": 16}, r"n_bits must be an int in the range \[2, 8\]"),
        ({"n_bits": 8.0}, r"n_bits must be an int in the range \[2, 8\]"),
        ({"observer": "median"}, "observer must be one of"),
        ({"granularity": "per_block"}, "granularity must be one of"),
        ({"outliers": "clip"}, "outliers must be one of"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
    ],
)
def test_quantize_model_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_model(_mlp([3, 2], _gen()), _randn(4, 3), **kwargs)


def test_quantize_model_bad_data_and_modules():
    net = _mlp([3, 2], _gen())
    with pytest.raises(ValueError, match="at least one sample"):
        quantize_model(net, torch.zeros(0, 3))
    with pytest.raises(ValueError, match="NaN or infinity"):
        quantize_model(net, torch.tensor([[0.0, float("inf"), 1.0]]))
    with pytest.raises(ValueError, match="no torch.nn.Linear"):
        quantize_model(torch.nn.Sequential(torch.nn.ReLU()), torch.zeros(2, 3))


def test_quantize_model_observer_choice_and_numpy_input():
    net = _mlp([4, 6, 2], _gen(8))
    X = _randn(200, 4, seed=8).numpy()
    q = quantize_model(net, X, observer="percentile", granularity="per_tensor")
    oracle = PercentileObserver(8, scheme="asymmetric")
    oracle.update(X)
    s, z = oracle.calculate_qparams()
    assert float(q[0].input_scale) == s and int(q[0].input_zero_point) == z
    s_minmax, _ = calculate_qparams(X.min(), X.max(), scheme="asymmetric")
    assert s < s_minmax  # the percentile clips the tails


def test_quantized_structure_restores_a_state_dict_and_pickles():
    net = TwoHeads(_gen(9))
    X = _randn(30, 6, seed=9)
    q = quantize_model(net, X, n_bits=6)
    with torch.no_grad():
        ref = q(X)
    buffer = io.BytesIO()
    torch.save(q.state_dict(), buffer)
    buffer.seek(0)
    restored = quantized_structure(net, n_bits=6)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for clone in [restored, pickle.loads(pickle.dumps(q)), copy.deepcopy(q)]:
        with torch.no_grad():
            out = clone(X)
        torch.testing.assert_close(out[0], ref[0], rtol=0, atol=0)
        torch.testing.assert_close(out[1], ref[1], rtol=0, atol=0)
    assert "n_bits=6" in repr(restored.mean)


def test_quantized_linear_float64_and_validation():
    lin = _mlp([3, 2], _gen())[0].double()
    X = _randn(10, 3).double()
    q = quantize_model(lin, X)
    with torch.no_grad():
        out = q(X)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, lin(X).detach(), rtol=0.02, atol=0.02)
    with pytest.raises(ValueError, match="Bad input quantization parameters"):
        q.set_input_qparams(0.0, 0)
    with pytest.raises(ValueError, match="Bad input quantization parameters"):
        q.set_input_qparams(1.0, 300)
    with pytest.raises(ValueError, match="granularity"):
        QuantizedLinear(3, 2, granularity="per_row")


# ------------------------------------------------------------ model size


def test_model_size_bytes_counts_every_tensor_once():
    lin = torch.nn.Linear(10, 4)
    assert model_size_bytes(lin) == (40 + 4) * 4
    shared = torch.nn.Sequential(lin, torch.nn.ReLU(), lin)  # one tensor set, counted once
    assert model_size_bytes(shared) == 176
    fq = LatentFakeQuantize(None, n_features=5)
    assert model_size_bytes(fq) == 2 * 5 * 8  # float64 range buffers
    q = quantize_model(torch.nn.Linear(10, 4), _randn(8, 10))
    # int8 codes + float32 scales and bias + per-feature float32 scale and uint8 zero point
    assert model_size_bytes(q) == 40 + 4 * 4 + 4 * 4 + 10 * (4 + 1)
    assert model_size_bytes(quantize_model(torch.nn.Linear(10, 4), _randn(8, 10), granularity="per_tensor")) == (
        40 + 4 * 4 + 4 * 4 + 4 + 1
    )


# --------------------------------------------- a trained autoencoder on digits


@pytest.fixture(scope="module")
def digits_autoencoder():
    """A float autoencoder 64-128-64-8 trained by a plain torch loop on digits/16 (standardised)."""
    X = load_digits().data / 16
    X_train, X_test = train_test_split(X, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train = torch.tensor(scaler.transform(X_train), dtype=torch.float32)
    X_test = torch.tensor(scaler.transform(X_test), dtype=torch.float32)
    gen = _gen(0)
    encoder, decoder = _mlp([64, 128, 64, 8], gen), _mlp([8, 64, 128, 64], gen)
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=2e-3)
    for _ in range(8):
        for idx in torch.randperm(len(X_train), generator=gen).split(64):
            xb = X_train[idx]
            optimizer.zero_grad()
            ((decoder(encoder(xb)) - xb) ** 2).mean().backward()
            optimizer.step()
    return encoder.eval(), decoder.eval(), X_train, X_test


def test_ptq_of_a_trained_autoencoder(digits_autoencoder):
    encoder, decoder, X_train, X_test = digits_autoencoder
    q_enc = quantize_model(encoder, X_train, n_bits=8)
    with torch.no_grad():
        Z, Z_q = encoder(X_test), q_enc(X_test)
        q_dec = quantize_model(decoder, q_enc(X_train), n_bits=8)
        err, err_q = ((decoder(Z) - X_test) ** 2).mean(), ((q_dec(Z_q) - X_test) ** 2).mean()
    size = model_size_bytes(encoder) + model_size_bytes(decoder)
    size_q = model_size_bytes(q_enc) + model_size_bytes(q_dec)
    assert size_q <= 0.3 * size
    assert float((Z_q - Z).norm() / Z.norm()) < 0.02  # held-out latent error
    assert float(err_q) < 1.02 * float(err)
    # Saturating the held-out values beyond the calibrated range costs far more:
    # digits has pixels almost constant in training that light up in the test split.
    q_sat = quantize_model(encoder, X_train, n_bits=8, outliers="saturate")
    with torch.no_grad():
        rel_sat = float((q_sat(X_test) - Z).norm() / Z.norm())
        rel_train = float((q_sat(X_train) - encoder(X_train)).norm() / encoder(X_train).norm())
    assert rel_train < 0.02 < rel_sat


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))],
)
def test_every_block_runs_on_the_module_device(device):
    """QAT training steps, then PTQ, on ``device``; the results match the CPU run."""

    def run(dev):
        config = check_qat({"n_bits": 4})
        net = torch.nn.Sequential(_mlp([6, 16, 3], _gen(10)), LatentFakeQuantize(config), _mlp([3, 16, 6], _gen(11)))
        net = prepare_qat(net, config).to(dev)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
        X = _randn(64, 6, seed=10).to(dev)
        for _ in range(3):
            optimizer.zero_grad()
            ((net(X) - X) ** 2).mean().backward()
            optimizer.step()
        net.eval()
        q = quantize_model(net, X, n_bits=8)
        assert all(t.device.type == dev for t in q.buffers())
        with torch.no_grad():
            return net(X).cpu(), q(X).cpu(), model_size_bytes(q)

    out, out_q, size = run(device)
    ref, ref_q, ref_size = run("cpu")
    assert size == ref_size
    # (float rounding differs between devices; a code could flip at a rounding boundary,
    # which these seeds do not hit)
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(out_q, ref_q, rtol=1e-3, atol=1e-3)
