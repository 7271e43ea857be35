"""Moved to :mod:`unsup.quantization.nn`; kept so that models pickled before the move still load.

A pickled ``Autoencoder`` or ``VariationalAutoencoder`` trained with ``qat=``
or quantized with ``quantize()`` holds modules whose classes were defined
here. Import them from :mod:`unsup.quantization.nn`.
"""

from unsup.quantization.nn import (  # noqa: F401
    LATENT_OBSERVERS,
    QAT_DEFAULTS,
    FakeQuantConv2d,
    FakeQuantConvTranspose2d,
    FakeQuantLinear,
    LatentFakeQuantize,
    QuantizedConv2d,
    QuantizedConvTranspose2d,
    QuantizedLinear,
    check_qat,
    model_size_bytes,
    prepare_qat,
    quantize_model,
    quantized_structure,
)
