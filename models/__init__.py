"""Keras models only: backbones by name (:mod:`models.backbones`), heads from the manifest's
vocabularies (:mod:`models.heads`), fine-tuning stages and the full model (:mod:`models.build`).
No losses, optimisers or file I/O here; model code uses ``keras`` and ``keras.ops`` only."""
