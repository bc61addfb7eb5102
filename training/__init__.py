"""Training: configuration (:mod:`.config`, :mod:`.validation`), the run plan and its builders
(:mod:`.plan`), distribution (:mod:`.distribute`), the tf.data input pipeline (:mod:`.data`,
:mod:`.augment`), losses and metrics (:mod:`.losses`, :mod:`.metrics`), optimisers and schedules
(:mod:`.optim`), resumable runs (:mod:`.run`, :mod:`.callbacks`, :mod:`.trainer`, :mod:`.report`)
and the entry point ``python -m training.fit`` (:mod:`.fit`).

TensorFlow is imported here, once, with its start-up chatter filtered (it serves tf.data whatever
Keras' backend); Keras itself is imported by the modules that need it.
"""
from common.cli import quiet_tensorflow

quiet_tensorflow()
