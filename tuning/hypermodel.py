"""The keras-tuner hypermodel: a trial's configuration = base config + the space's values.

Model building, datasets, losses, optimisers and strategy come from :mod:`training` unchanged; the
datasets are built per trial because a space may change the batch size or the image size.
"""
from __future__ import annotations

import dataclasses
from typing import Dict

import keras_tuner

from tuning.space import SearchSpace, apply


@dataclasses.dataclass
class SearchContext:
    """What every trial shares: strategy, manifest, heads (from ``training.fit.Context``-like setup)."""

    strategy: object
    replicas: int
    pad: bool
    manifest_dir: str
    manifest: dict
    heads: Dict[str, int]
    max_epochs: int
    verbose: int = 0


class CarHyperModel(keras_tuner.HyperModel):
    def __init__(self, base, space: SearchSpace, context: SearchContext):
        super().__init__(name="car_recognition")
        self.base, self.space, self.context = base, space, context

    def trial_config(self, hp):
        """The complete training configuration of the trial whose values ``hp`` holds."""
        return apply(self.base, self.space.overrides(self.space.define(hp)))

    def _sizes(self, config):
        from training import setup
        from training.strategy import global_batch_size

        global_batch = global_batch_size(config.data.batch_size, self.context.replicas, config.data.global_batch_size)
        examples = setup.split_size(self.context.manifest, config.data.train_split)
        steps = config.training.steps_per_epoch or max(1, examples // global_batch)
        return global_batch, steps

    def build(self, hp):
        from training import setup

        config = self.trial_config(hp)
        global_batch, steps = self._sizes(config)
        model = setup.new_model(config, self.context.heads, setup.image_size_for(config))
        setup.compile_model(model, config, self.context.manifest, self.context.heads, global_batch, steps,
                            self.context.max_epochs)
        return model

    def fit(self, hp, model, *args, **kwargs):
        from training import setup
        from training.callbacks import HeadPrefixedLogs

        config = self.trial_config(hp)
        global_batch, steps = self._sizes(config)
        spec = setup.pipeline_spec(config, self.context.manifest, self.context.heads, setup.image_size_for(config))
        train, val = setup.datasets(config, self.context.manifest_dir, self.context.manifest, spec, global_batch,
                                    self.context.pad, steps, first_epoch=kwargs.get("initial_epoch", 0))
        callbacks = list(kwargs.pop("callbacks", []))
        if len(self.context.heads) == 1:  # same metric names as multi-head runs, before keras-tuner reads them
            callbacks.insert(0, HeadPrefixedLogs(next(iter(self.context.heads))))
        kwargs.setdefault("verbose", self.context.verbose)
        return model.fit(train, validation_data=val, steps_per_epoch=steps, callbacks=callbacks, shuffle=False,
                         **kwargs)
