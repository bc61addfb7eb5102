"""The keras-tuner hypermodel: a trial's configuration = base config + the space's values.

Each trial is a run plan (:func:`training.plan.make_plan`) built from its configuration with the
search's distribution and shards, so models, losses, optimisers, datasets and sizes come from the
same builders as ``training.fit``; the datasets are built per trial because a space may change the
batch size or the image size.
"""
from __future__ import annotations

import keras_tuner

from training.callbacks import HeadPrefixedLogs
from training.config import Config
from training.distribute import Distribution
from training.plan import RunPlan, Shards, compile_model, make_plan, new_model, training_data
from tuning.space import SearchSpace, apply


class CarHyperModel(keras_tuner.HyperModel):
    def __init__(self, base: Config, space: SearchSpace, distribution: Distribution, shards: Shards,
                 max_epochs: int, verbose: int = 0):
        super().__init__(name="car_recognition")
        self.base, self.space, self.distribution, self.shards = base, space, distribution, shards
        self.max_epochs, self.verbose = max_epochs, verbose

    def trial_config(self, hp) -> Config:
        """The complete training configuration of the trial whose values ``hp`` holds."""
        return apply(self.base, self.space.overrides(self.space.define(hp)))

    def trial_plan(self, hp) -> RunPlan:
        return make_plan(self.trial_config(hp), self.distribution, self.shards)

    def build(self, hp):
        plan = self.trial_plan(hp)
        return compile_model(new_model(plan), plan, epochs=self.max_epochs)

    def fit(self, hp, model, *args, **kwargs):
        plan = self.trial_plan(hp)
        train, val = training_data(plan, first_epoch=kwargs.get("initial_epoch", 0))
        callbacks = list(kwargs.pop("callbacks", []))
        if len(plan.heads) == 1:  # same metric names as multi-head runs, before keras-tuner reads them
            callbacks.insert(0, HeadPrefixedLogs(next(iter(plan.heads))))
        kwargs.setdefault("verbose", self.verbose)
        return model.fit(train, validation_data=val, steps_per_epoch=plan.steps_per_epoch, callbacks=callbacks,
                         shuffle=False, **kwargs)
