"""What a search leaves behind: ``trials.csv``, ``search.png`` and ``best.yaml``."""
from __future__ import annotations

import dataclasses
import datetime
import math
from typing import List, Optional

import pandas as pd

from common import fs
from common.plotting import pyplot, save_figure
from training.config import dump_config
from tuning.space import SearchSpace, apply, tidy

TUNER_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round")


def trials_table(oracle, space: SearchSpace) -> pd.DataFrame:
    """One row per trial: id, status, objective value, epoch budget, Hyperband bracket/round, values."""
    rows = []
    for trial in sorted(oracle.trials.values(), key=lambda t: int(t.trial_id) if t.trial_id.isdigit() else 0):
        values = trial.hyperparameters.values
        row = {"trial": trial.trial_id, "status": str(trial.status), "objective": trial.score}
        row.update({key.split("/")[1]: values.get(key) for key in TUNER_KEYS})
        row.update({parameter.name: values.get(parameter.name) for parameter in space.hyperparameters})
        rows.append(row)
    return pd.DataFrame(rows)


def plot_search(table: pd.DataFrame, objective: str, direction: str, path: str) -> None:
    plt = pyplot()
    done = table[table["objective"].notna()]
    figure, axis = plt.subplots(figsize=(7, 3.6))
    if len(done):
        order = range(1, len(done) + 1)
        budget = done["epochs"].fillna(1).astype(float)
        scatter = axis.scatter(list(order), done["objective"], c=budget, cmap="viridis", s=30, label="trial")
        best = done["objective"].cummin() if direction == "min" else done["objective"].cummax()
        axis.plot(list(order), best, "--", color="black", label="best so far")
        figure.colorbar(scatter, ax=axis, label="epochs")
        axis.legend()
    axis.set_xlabel("trial (completion order)")
    axis.set_ylabel(objective)
    axis.set_title("search")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path, dpi=100, tight=False)


def best_config(base, space: SearchSpace, trial):
    values = {p.name: tidy(trial.hyperparameters.values[p.name]) for p in space.hyperparameters}
    config = apply(base, space.overrides(values))
    return dataclasses.replace(config, name=f"{base.name}_tuned",
                               description=f"{base.name} with the best values of the {space.name} search"), values


def write_best(path: str, config, values: dict, trial, source: str, overrides: List[str], space: SearchSpace,
               algorithm: str, objective: str) -> None:
    score = "n/a" if trial.score is None or (isinstance(trial.score, float) and math.isnan(trial.score)) \
        else f"{trial.score:.6g}"
    epochs = trial.hyperparameters.values.get("tuner/epochs")
    header = "\n".join([
        f"# best.yaml — written by python -m tuning.hyperband on {datetime.date.today().isoformat()}",
        f"# Source: {source}" + (f" with --set {' '.join(overrides)}" if overrides else ""),
        f"# Search: space {space.name}, {algorithm}; best trial {trial.trial_id}: {objective} = {score}"
        + (f" after {epochs} epochs" if epochs else ""),
        "# Values: " + ", ".join(f"{name}={value}" for name, value in values.items()),
        f"# Command: python -m training.fit --config {path}",
        "# Expected: that objective value or better with the full training.epochs below (the search",
        "#   trained each trial for its Hyperband budget only).",
    ])
    fs.write_text_atomic(path, dump_config(config, header))


def write_results(out: str, tuner, space: SearchSpace, base, source: str, overrides: List[str],
                  algorithm: str, objective: str, direction: str) -> Optional[dict]:
    """Write the three result files; return a summary (``None`` when no trial finished)."""
    table = trials_table(tuner.oracle, space)
    fs.write_text_atomic(fs.join(out, "trials.csv"), table.to_csv(index=False))
    plot_search(table, objective, direction, fs.join(out, "search.png"))
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials:
        return None
    trial = best_trials[0]
    config, values = best_config(base, space, trial)
    write_best(fs.join(out, "best.yaml"), config, values, trial, source, overrides, space, algorithm, objective)
    return {"trials": len(table), "completed": int((table["status"] == "COMPLETED").sum()),
            "best_trial": trial.trial_id, "best_value": trial.score, "values": values}
