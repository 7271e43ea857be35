"""Neural dimensionality reduction: autoencoders as scikit-learn estimators.

Design constraints:

- :class:`Autoencoder` and :class:`VariationalAutoencoder` (alias :data:`VAE`)
  are transformers (``transform`` = encoder, ``inverse_transform`` =
  decoder) and outlier detectors with scikit-learn's contract
  (``score_samples`` higher is more normal, ``predict`` gives +1 / -1,
  ``offset_`` from ``contamination``), so they go into a ``Pipeline`` or a
  ``GridSearchCV`` (``score`` needs no labels);
- one training loop (:mod:`unsup.neural._training`) serves both, and later
  models: epochs, batches, early stopping on a validation split, NaN checks;
- the networks come from the module factory of their ``architecture``
  (:mod:`unsup.neural._architectures`: plain ``nn.Sequential`` stacks of
  ``nn.Linear``, or with ``architecture="conv"`` convolution blocks of
  :mod:`unsup.neural._conv`), so quantization-aware training (``qat=``) and post-training
  quantization (:meth:`Autoencoder.quantize`) can swap the layers;
- all randomness from ``random_state`` through ``torch.Generator`` objects,
  never torch's global state; numpy in, numpy out;
- :class:`AutoencoderEnsemble` is the recommended reconstruction-error
  outlier detector: many small autoencoders on subsampled rows and features,
  their standardised errors averaged.
"""

from unsup.neural._autoencoder import Autoencoder
from unsup.neural._ensemble import AutoencoderEnsemble
from unsup.neural._training import DivergenceWarning
from unsup.neural._vae import VAE, VariationalAutoencoder

__all__ = ["VAE", "Autoencoder", "AutoencoderEnsemble", "DivergenceWarning", "VariationalAutoencoder"]
