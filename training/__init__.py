"""Training: configuration (:mod:`.config`), distribution strategy (:mod:`.strategy`), the tf.data
input pipeline (:mod:`.data`, :mod:`.augment`), losses and metrics (:mod:`.losses`, :mod:`.metrics`),
optimisers and schedules (:mod:`.optim`), resumable runs (:mod:`.run`, :mod:`.callbacks`) and the
entry point ``python -m training.fit`` (:mod:`.fit`)."""
