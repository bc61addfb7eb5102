"""Training: configuration (:mod:`.config`, :mod:`.validation`), the run plan and its builders
(:mod:`.plan`), distribution (:mod:`.distribute`), the tf.data input pipeline (:mod:`.data`,
:mod:`.augment`), losses and metrics (:mod:`.losses`, :mod:`.metrics`), optimisers and schedules
(:mod:`.optim`), resumable runs (:mod:`.run`, :mod:`.callbacks`, :mod:`.trainer`, :mod:`.report`)
and the entry point ``python -m training.fit`` (:mod:`.fit`).

Nothing is imported here but the backend choice (``common.backend``: ``KERAS_BACKEND`` if set, JAX
on a TPU, else TensorFlow), so that ``python -m training.fit`` can still follow ``training.backend``
from the configuration before TensorFlow and Keras are imported.
"""
from common import backend

backend.choose()  # before anything imports Keras: KERAS_BACKEND if set, JAX on a TPU, else TensorFlow
