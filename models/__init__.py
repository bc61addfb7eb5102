"""Keras models only: backbones by name (:mod:`models.backbones`), heads from the manifest's
vocabularies (:mod:`models.heads`), fine-tuning stages and the full model (:mod:`models.build`).
No losses, optimisers or file I/O here; model code uses ``keras`` and ``keras.ops`` only.

The registries are filled when the package is imported: the modules that register entries are
imported here, so no registry module imports its entries (and no import cycle keeps it filled).
On the TensorFlow backend Keras imports TensorFlow, so it is imported first with its start-up chatter
filtered; on JAX nothing here needs TensorFlow, and a machine without it can build and train models.
"""
from common import backend
from common.cli import quiet_tensorflow

if backend.choose().name == "tensorflow":  # before Keras: KERAS_BACKEND if set, JAX on a TPU, else TF
    quiet_tensorflow()

from models import backbones, custom_cnn, heads, layers  # noqa: E402,F401  (fill BACKBONES, HEADS, PIXEL_MODES)
