"""Convolutional autoencoders and VAEs (architecture="conv"): layout, contracts, bad input, quantization.

Oracles: the same network written in plain torch (``nn.Conv2d``, ``nn.MaxPool2d``,
``F.interpolate``...) on ``X.reshape(n, C, H, W)`` with the estimator's weights;
torch's ``fake_quantize_per_channel_affine`` for the per-filter weight grids
(axis 0 of a ``Conv2d`` weight, axis 1 of a ``ConvTranspose2d`` one).
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.nn import functional as F

from unsup.neural import Autoencoder, VariationalAutoencoder
from unsup.quantization.nn import (
    FakeQuantConv2d,
    FakeQuantConvTranspose2d,
    QuantizedConv2d,
    QuantizedConvTranspose2d,
    quantized_structure,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X_DIGITS = load_digits().data / 16
X_TRAIN, X_TEST = train_test_split(X_DIGITS, test_size=0.2, random_state=0)
SHAPE = (1, 8, 8)
SMALL = dict(architecture="conv", image_shape=SHAPE, conv_channels=(4, 8), max_epochs=3, random_state=0)
rng = np.random.default_rng(0)


def _conv_layers(module, cls):
    return [m for m in module.modules() if isinstance(m, cls)]


@pytest.mark.parametrize("cls", [Autoencoder, VariationalAutoencoder])
@pytest.mark.parametrize("kind", ["undercomplete", "sparse", "denoising"])
@pytest.mark.parametrize("down, up", [("pool", "upsample"), ("stride", "transpose")])
def test_shapes_of_every_kind_and_block(cls, kind, down, up):
    X = rng.standard_normal((40, 2 * 7 * 6)).astype(np.float32)  # odd sizes, two channels
    est = cls(n_components=3, architecture="conv", image_shape=(2, 7, 6), conv_channels=(4, 8), kind=kind,
              downsampling=down, upsampling=up, max_epochs=2, random_state=0).fit(X)
    Z = est.transform(X)
    assert Z.shape == (40, 3) and Z.dtype == np.float32
    assert est.inverse_transform(Z).shape == X.shape
    assert est.reconstruct(X).shape == X.shape
    scores = est.score_samples(X)
    assert scores.shape == (40,) and np.isfinite(scores).all()
    assert np.mean(est.predict(X) == -1) == pytest.approx(0.1, abs=0.03)
    assert est.offset_ == pytest.approx(np.percentile(scores, 10))


def test_transform_is_the_plain_torch_network_on_c_order_images():
    ae = Autoencoder(n_components=4, scale=False, downsampling="pool", upsampling="upsample", **SMALL).fit(X_TRAIN)
    enc, dec = ae.encoder_, ae.decoder_
    c1, c2, lin = enc.blocks[0][0], enc.blocks[1][0], enc.head[1]
    assert np.all(ae.scale_ == 1.0) and np.ptp(ae.mean_) == 0  # scale=False: centred on the channel's mean
    x = torch.from_numpy((X_TEST - ae.mean_).astype(np.float32)).reshape(-1, 1, 8, 8)
    with torch.no_grad():
        h = F.max_pool2d(F.relu(F.conv2d(x, c1.weight, c1.bias, padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, c2.weight, c2.bias, padding=1)), 2)
        z = F.linear(h.flatten(1), lin.weight, lin.bias)
        # the decoder mirrors the encoder's channels (8 -> 4 -> 4), then a same convolution outputs the image
        d_lin, d1, d2, out = dec.head[0], dec.blocks[0][1], dec.blocks[1][1], dec.blocks[1][3]
        assert (d1.out_channels, d2.out_channels, out.in_channels, out.out_channels) == (4, 4, 4, 1)
        y = F.relu(F.linear(z, d_lin.weight, d_lin.bias)).reshape(-1, 8, 2, 2)
        y = F.relu(F.conv2d(F.interpolate(y, size=(4, 4)), d1.weight, d1.bias, padding=1))
        y = F.relu(F.conv2d(F.interpolate(y, size=(8, 8)), d2.weight, d2.bias, padding=1))
        y = F.conv2d(y, out.weight, out.bias, padding=1).flatten(1)
    np.testing.assert_allclose(ae.transform(X_TEST), z.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ae.inverse_transform(z.numpy()), y.numpy() + ae.mean_, rtol=1e-4, atol=1e-5)


def test_image_shape_none_is_a_1d_signal_and_seeding_is_deterministic():
    X = rng.standard_normal((60, 10))
    state = torch.random.get_rng_state()
    a = Autoencoder(n_components=2, architecture="conv", conv_channels=(4,), max_epochs=3, random_state=1).fit(X)
    b = Autoencoder(n_components=2, architecture="conv", conv_channels=(4,), max_epochs=3, random_state=1).fit(X)
    assert torch.equal(torch.random.get_rng_state(), state)  # torch's global stream untouched
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    conv = a.encoder_.blocks[0][0]
    assert conv.kernel_size == (1, 3) and a.encoder_.unflatten.unflattened_size == (1, 1, 10)


def test_scale_standardises_each_channel():
    X = rng.random((50, 3 * 4 * 5)) * np.repeat([1.0, 10.0, 100.0], 20)
    ae = Autoencoder(n_components=2, architecture="conv", image_shape=(3, 4, 5), conv_channels=(4,), max_epochs=1,
                     scale=True, random_state=0).fit(X)
    channels = X.reshape(50, 3, 20)
    np.testing.assert_allclose(ae.mean_.reshape(3, 20), np.repeat(channels.mean(axis=(0, 2))[:, None], 20, axis=1))
    np.testing.assert_allclose(ae.scale_.reshape(3, 20), np.repeat(channels.std(axis=(0, 2))[:, None], 20, axis=1))


def test_conv_learns_digits():
    # A real fit: the conv autoencoder reconstructs held-out digits better than their mean.
    ae = Autoencoder(n_components=8, architecture="conv", image_shape=SHAPE, max_epochs=10, random_state=0)
    ae.fit(X_TRAIN)
    mse = np.mean((ae.reconstruct(X_TEST) - X_TEST) ** 2)
    baseline = np.mean((X_TRAIN.mean(axis=0) - X_TEST) ** 2)
    assert mse < 0.5 * baseline


def test_inference_chunks_fit_the_widest_activation():
    # Feature maps are many times wider than a row: conv inference runs a few dozen rows a pass
    # (4,096 rows of 24 x 14 x 14 maps ran 2.5x slower than 256), a narrow MLP the full 4,096.
    X = np.random.default_rng(0).random((300, 784), dtype=np.float32)
    conv = Autoencoder(16, architecture="conv", image_shape=(1, 28, 28), max_epochs=1, random_state=0)
    conv.fit(X)
    widest = 32 * 28 * 28  # the decoder's last block, at full resolution, of one row
    assert conv._forward_rows(10**6) == (3 << 19) // widest // 16 * 16 == 48
    mlp = Autoencoder(2, hidden_layer_sizes=(256, 128), max_epochs=1, random_state=0).fit(X_TRAIN)
    assert mlp._forward_rows(10**6) == 4096
    assert conv._forward_rows(16) == mlp._forward_rows(16) == 4096  # one padded pass
    # measured once, when the network is built: not per call (nor per chunk), and kept through pickling
    def measured_again(*args):
        raise AssertionError("the profile was measured again")

    conv._measure_profile = measured_again
    conv.transform(X), conv.score_samples(X), conv.partial_fit(X)
    del conv._measure_profile
    state = conv.__getstate__()
    assert state["_profile"] == conv._profile
    del state["_profile"]  # a model pickled before the profile was kept measures it on load
    old = Autoencoder.__new__(Autoencoder)
    old.__setstate__(state)
    assert old._profile == conv._profile
    # chunking changes no result: 1,000 rows in 48-row passes equal each row's own pass
    big = np.random.default_rng(1).random((1000, 784), dtype=np.float32)
    per_row = np.vstack([conv.transform(big[i : i + 1]) for i in range(0, 1000, 97)])
    np.testing.assert_allclose(conv.transform(big)[::97], per_row, rtol=1e-5, atol=1e-6)


def test_thread_choice_counts_a_convolution_multiply_adds(monkeypatch):
    # One row's multiply-adds: a convolution's weights meet every output pixel, a transposed one's every
    # input pixel; a fully connected layer's weights once. Quantized layers (int8 codes) count the same.
    X = np.random.default_rng(0).random((300, 784), dtype=np.float32)
    conv = Autoencoder(16, architecture="conv", image_shape=(1, 28, 28), max_epochs=1, random_state=0).fit(X)
    # encoder: stride-2 convolutions 1 -> 32 (14 x 14 out), 32 -> 64 (7 x 7), Linear 3136 -> 16; decoder: Linear
    # 16 -> 3136, upsampling then convolutions 64 -> 32 (14 x 14), 32 -> 32 (28 x 28), the output one 32 -> 1
    macs = (32 * 9 * 14 * 14 + 64 * 32 * 9 * 7 * 7 + 3136 * 16
            + 16 * 3136 + 64 * 32 * 9 * 14 * 14 + 32 * 32 * 9 * 28 * 28 + 32 * 9 * 28 * 28)
    assert conv._profile == (32 * 28 * 28, macs)
    assert conv.quantize(X[:100])._measure_profile(784) == (32 * 28 * 28, macs)
    mlp = Autoencoder(2, hidden_layer_sizes=(256, 128), max_epochs=1, random_state=0).fit(X_TRAIN)
    assert mlp._profile == (256, 2 * (64 * 256 + 256 * 128 + 128 * 2))
    # with skip connections the decoder's blocks take the joined maps: twice the widest block output
    skips = Autoencoder(16, architecture="conv", image_shape=(1, 28, 28), skip_connections=True, max_epochs=1,
                        random_state=0).fit(X)
    assert skips._profile[0] == 2 * 32 * 28 * 28

    seen = []
    initialise = Autoencoder._initialise

    def report(module, inputs, output):  # the training steps (train mode) report their torch thread count
        if module.training:
            seen.append(torch.get_num_threads())

    def watched(self, X):
        rows = initialise(self, X)
        self.encoder_.register_forward_hook(report)
        return rows

    monkeypatch.setattr(Autoencoder, "_initialise", watched)
    available = torch.get_num_threads()
    # 16 rows x 12.1M multiply-adds: under 2 x 2**28, one thread (weights alone would say 123k a row)
    Autoencoder(16, architecture="conv", image_shape=(1, 28, 28), batch_size=16, max_epochs=1, random_state=0).fit(X)
    assert seen[0] == 1
    # a batch of 256: 3.1G, up to 11 threads
    seen.clear()
    Autoencoder(16, architecture="conv", image_shape=(1, 28, 28), batch_size=256, max_epochs=1, random_state=0).fit(X)
    assert seen[0] == min(available, 11)
    assert torch.get_num_threads() == available


def test_fit_scores_the_training_rows_once():
    ae = Autoencoder(3, **SMALL)
    calls = []
    errors = ae._errors
    ae._errors = lambda xs: calls.append(xs.shape[0]) or errors(xs)
    ae.fit(X_TRAIN)
    assert len(calls) == 1  # offset_ and the divergence check share the pass


def test_partial_fit_and_pickling():
    ae = Autoencoder(n_components=3, **SMALL)
    ae.partial_fit(X_TRAIN[:200])
    ae.partial_fit(X_TRAIN[200:400])
    assert ae.n_iter_ == 2 and len(ae.loss_curve_) == 2
    again = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(again.transform(X_TEST), ae.transform(X_TEST))
    np.testing.assert_array_equal(again.score_samples(X_TEST), ae.score_samples(X_TEST))
    again.partial_fit(X_TRAIN[:100])
    assert again.n_iter_ == 3


def test_vae_samples_images():
    vae = VariationalAutoencoder(n_components=2, **SMALL).fit(X_TRAIN)
    assert vae.sample(16, random_state=0).shape == (16, 64)
    np.testing.assert_array_equal(vae.score_samples(X_TEST[:5]), vae.score_samples(X_TEST[:5]))


@pytest.mark.parametrize("cls", [Autoencoder, VariationalAutoencoder])
def test_skip_connections_bypass_the_bottleneck(cls):
    params = dict(n_components=2, **{**SMALL, "max_epochs": 15}, kind="denoising", noise=0.3)
    plain = cls(**params).fit(X_TRAIN)
    skip = cls(skip_connections=True, **params).fit(X_TRAIN)
    assert skip.transform(X_TEST).shape == (len(X_TEST), 2)  # the bottleneck code, as without skips
    # the feature maps carry what a 2-number code cannot: far better reconstructions
    # (less so in a VAE, whose KL term also pulls the reconstructions towards typical digits)
    ratio = 0.7 if cls is Autoencoder else 0.85
    assert skip.reconstruction_error(X_TEST).mean() < ratio * plain.reconstruction_error(X_TEST).mean()
    assert not hasattr(skip, "inverse_transform")  # a code alone cannot be decoded
    if cls is VariationalAutoencoder:
        assert not hasattr(skip, "sample")
    q = skip.quantize(X_TRAIN[:300])
    rel = np.linalg.norm(q.reconstruct(X_TEST) - skip.reconstruct(X_TEST)) / np.linalg.norm(skip.reconstruct(X_TEST))
    assert rel < 0.05


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(image_shape=(1, 7, 9)), r"X has 64 features, but Autoencoder is expecting 63 features"),
        (dict(image_shape=(1, 8)), r"image_shape must be None or a tuple of three positive ints"),
        (dict(image_shape=(0, 8, 8)), r"image_shape must be None or a tuple of three positive ints"),
        (dict(conv_channels=(4, 8, 8, 8)), r"too small for 4 downsampling block\(s\).*after 3 block\(s\) the image is 1x1"),
        (dict(conv_channels=()), r"conv_channels must be a positive int or a non-empty sequence"),
        (dict(kernel_size=4), r"kernel_size must be odd"),
    ],
)
def test_bad_conv_parameters_are_rejected_at_fit(params, match):
    with pytest.raises(ValueError, match=match):
        Autoencoder(**{**SMALL, **params}).fit(X_TRAIN[:50])


def test_too_short_signal_names_n_features():
    with pytest.raises(ValueError, match=r"n_features=2"):
        Autoencoder(architecture="conv", conv_channels=(4, 4)).fit(rng.standard_normal((20, 2)))


def test_bad_choices_in_sklearn_words():
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'architecture' parameter of Autoencoder must be"):
        Autoencoder(architecture="cnn").fit(X_TRAIN[:20])
    with pytest.raises(InvalidParameterError, match="'downsampling' parameter"):
        Autoencoder(architecture="conv", image_shape=SHAPE, downsampling="avg").fit(X_TRAIN[:20])


# ------------------------------------------------------------------ quantization


@pytest.fixture(scope="module", params=["upsample", "transpose"])
def conv_model(request):
    return Autoencoder(n_components=8, architecture="conv", image_shape=SHAPE, upsampling=request.param,
                       max_epochs=20, random_state=0).fit(X_TRAIN)


def test_quantize_gives_int8_filters_small_and_close(conv_model):
    q = conv_model.quantize(X_TRAIN)
    quantized = (QuantizedConv2d, QuantizedConvTranspose2d)
    convs = _conv_layers(q.encoder_, quantized) + _conv_layers(q.decoder_, quantized)
    # two encoder blocks, two decoder blocks and the decoder's output convolution
    transposed = conv_model.upsampling == "transpose"
    assert len(convs) == 5 and len(_conv_layers(q.decoder_, QuantizedConvTranspose2d)) == (2 if transposed else 0)
    assert not [m for net in (q.encoder_, q.decoder_) for m in _conv_layers(net, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    for layer in convs:
        assert layer.weight_codes.dtype == torch.int8
        assert layer.weight_scale.shape == (layer.out_channels,)  # one scale per filter
    assert q.model_size_bytes_ <= 0.3 * conv_model.model_size_bytes_
    Z, Z_q = conv_model.transform(X_TEST), q.transform(X_TEST)
    rel = np.linalg.norm(Z_q - Z) / np.linalg.norm(Z)
    assert 0 < rel < 0.03, rel
    again = pickle.loads(pickle.dumps(q))
    np.testing.assert_array_equal(again.transform(X_TEST), Z_q)
    restored = quantized_structure(conv_model.decoder_)
    restored.load_state_dict(q.decoder_.state_dict())
    z = torch.from_numpy(Z.astype(np.float32))
    with torch.no_grad():
        assert torch.equal(restored(z), q.decoder_(z))


@pytest.mark.parametrize("cls", [Autoencoder, VariationalAutoencoder])
@pytest.mark.parametrize("shape, code", [((1, 28, 28), 8), ((3, 16, 16), 8)])
def test_quantized_size_counts_map_channels_not_flattened_features(cls, shape, code):
    # Next to the flattened maps (64 x 7 x 7 = 3,136 features for 1x28x28) one float scale per
    # feature outweighed the int8 codes: 0.37x (1x28x28, code 8) and 0.325x (3x16x16) before, with
    # the former (24, 48) channels
    rng = np.random.default_rng(0)
    X = rng.standard_normal((240, 6)) @ rng.standard_normal((6, int(np.prod(shape))))
    model = cls(code, architecture="conv", image_shape=shape, max_epochs=3, random_state=0).fit(X[:200])
    q = model.quantize(X[:200])
    assert q.model_size_bytes_ <= 0.3 * model.model_size_bytes_
    assert q.encoder_.head[1].input_scale.shape == (64,) and q.decoder_.head[0].weight_scale.shape == (64,)
    Z, Z_q = model.transform(X[200:]), q.transform(X[200:])
    assert 0 < np.linalg.norm(Z_q - Z) / np.linalg.norm(Z) < 0.03


def test_qat_heads_train_on_the_grid_of_their_int8_copy():
    # With qat=, the decoder's first Linear fake-quantizes its weight with one scale per map
    # channel during training, the grid its post-training copy then uses: the weights are equal
    rng = np.random.default_rng(0)
    X = rng.standard_normal((240, 6)) @ rng.standard_normal((6, 784))
    model = Autoencoder(8, architecture="conv", image_shape=(1, 28, 28), max_epochs=2, random_state=0, qat={})
    model.fit(X[:200])
    q = model.quantize(X[:200])
    head, q_head = model.decoder_.head[0], q.decoder_.head[0]
    assert head.output_channels == 64 and model.encoder_.head[1].input_channels == 64
    assert torch.equal(head.quantized_weight().detach(), q_head.weight)
    assert q.model_size_bytes_ <= 0.3 * model.model_size_bytes_


def test_quantized_conv_equals_torch_fake_quantized_conv():
    torch.manual_seed(0)  # test data only: the estimators never use the global stream
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    x = torch.rand(4, 3, 6, 6)
    in_scale, in_zp = np.full(3, 1 / 255, dtype=np.float32), np.zeros(3, dtype=np.int64)
    q = QuantizedConv2d.from_conv(conv, input_scale=in_scale, input_zero_point=in_zp)
    w = conv.weight.detach()
    w_scale = w.abs().amax(dim=(1, 2, 3)) / 127
    w_hat = torch.fake_quantize_per_channel_affine(w, w_scale, torch.zeros(5, dtype=torch.int32), 0, -127, 127)
    x_hat = torch.fake_quantize_per_channel_affine(
        x, torch.from_numpy(in_scale), torch.zeros(3, dtype=torch.int32), 1, 0, 255
    )
    with torch.no_grad():
        torch.testing.assert_close(q(x), F.conv2d(x_hat, w_hat, conv.bias, padding=1), rtol=1e-5, atol=1e-6)


def test_transposed_filters_are_quantized_along_axis_1():
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(6, 2, 3, stride=2, padding=1, output_padding=1)
    with torch.no_grad():
        conv.weight[:, 1] *= 100  # output channel 1 a hundred times larger: per-filter scales keep channel 0 fine
    q = QuantizedConvTranspose2d.from_conv(conv, input_scale=0.01, input_zero_point=0, granularity="per_tensor")
    assert q.weight_scale.shape == (2,)
    w = conv.weight.detach()
    scale = w.abs().amax(dim=(0, 2, 3)) / 127
    expected = torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(2, dtype=torch.int32), 1, -127, 127)
    torch.testing.assert_close(q.weight, expected, rtol=0, atol=1e-7)
    fq = FakeQuantConvTranspose2d.from_conv(conv, n_bits=8)
    assert fq.weight is conv.weight
    torch.testing.assert_close(fq.quantized_weight(), expected, rtol=0, atol=1e-7)
    x = torch.rand(2, 6, 3, 3)
    assert fq(x).shape == conv(x).shape == (2, 2, 6, 6)


def test_qat_covers_the_convolutions():
    ae = Autoencoder(n_components=4, qat={"n_bits": 8}, downsampling="stride", upsampling="transpose", **SMALL)
    ae.fit(X_TRAIN)
    assert len(_conv_layers(ae.encoder_, FakeQuantConv2d)) == 2
    assert len(_conv_layers(ae.decoder_, FakeQuantConvTranspose2d)) == 2
    assert ae.latent_quantizer_ is not None
    q = ae.quantize(X_TRAIN[:300])
    assert len(_conv_layers(q.decoder_, QuantizedConvTranspose2d)) == 2
    assert q.transform(X_TEST).shape == (len(X_TEST), 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_conv_matches_cpu_closely():
    cpu = Autoencoder(n_components=4, **SMALL).fit(X_TRAIN)
    gpu = Autoencoder(n_components=4, device="cuda", **SMALL).fit(X_TRAIN)
    assert next(gpu.encoder_.parameters()).is_cuda
    np.testing.assert_allclose(gpu.transform(X_TEST), cpu.transform(X_TEST), rtol=1e-3, atol=1e-3)
    again = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_allclose(again.transform(X_TEST), gpu.transform(X_TEST), rtol=1e-6, atol=1e-6)
