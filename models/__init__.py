"""Keras models only: backbones by name (:mod:`models.backbones`), heads from the manifest's
vocabularies (:mod:`models.heads`), fine-tuning stages and the full model (:mod:`models.build`).
No losses, optimisers or file I/O here; model code uses ``keras`` and ``keras.ops`` only.

The registries are filled when the package is imported: the modules that register entries are
imported here, so no registry module imports its entries (and no import cycle keeps it filled).
TensorFlow's start-up chatter is filtered first (Keras imports it on the TensorFlow backend).
"""
from common import backend
from common.cli import quiet_tensorflow

backend.choose()  # before anything imports Keras: KERAS_BACKEND if set, JAX on a TPU, else TensorFlow
quiet_tensorflow()

from models import backbones, custom_cnn, heads, layers  # noqa: E402,F401  (fill BACKBONES, HEADS, PIXEL_MODES)
