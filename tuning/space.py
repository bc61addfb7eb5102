"""Search spaces as data: YAML over any training-config key.

```yaml
description: report 004's Hyperband space
hyperparameters:
  learning_rate: {choice: [1.0e-2, 1.0e-3], key: optimizer.learning_rate}   # values of one type
  dropout: {float: [0.0, 0.5], step: 0.1, key: model.dropout}                # or sampling: log
  layers: {int: [1, 5]}                                                      # no key: used in `derived`
  optimizer: {choice: {adam: {optimizer.name: adam},                         # labelled bundles of
                       sgd_m: {optimizer.name: sgd, optimizer.momentum: 0.9}}}  # config values
derived:
  model.trunk_units: "[2 * units] * layers"   # arithmetic over hyperparameter names
```

Everything is checked against the base configuration before any training: every choice, both ends
of every range and every derived key must produce a valid configuration.
"""
from __future__ import annotations

import ast
import dataclasses
import operator
import os
import re
from typing import Dict, Optional, Sequence, Tuple


from common import fs
from common.errors import UserError
from training.config import config_from_dict, read_yaml, to_plain
from training.validation import check_config

SPACE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spaces")
KINDS = ("choice", "int", "float")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One searched value: a choice, an integer or a float range, or a choice of labelled bundles."""

    name: str
    kind: str  # choice | bundle | int | float
    key: Optional[str] = None
    values: Tuple = ()  # choice values, or bundle labels
    bundles: Tuple[Tuple[str, Tuple[Tuple[str, object], ...]], ...] = ()
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None
    sampling: str = "linear"

    def define(self, hp):
        """Register with a keras-tuner ``HyperParameters`` object and return the current value."""
        if self.kind in ("choice", "bundle"):
            return hp.Choice(self.name, list(self.values))
        if self.kind == "int":
            return hp.Int(self.name, int(self.low), int(self.high), step=int(self.step or 1), sampling=self.sampling)
        return hp.Float(self.name, float(self.low), float(self.high), step=self.step, sampling=self.sampling)

    def corners(self) -> Tuple:
        """Values that together exercise the whole range (for validation)."""
        return self.values if self.kind in ("choice", "bundle") else (self.low, self.high)

    def settings(self, value) -> Dict[str, object]:
        """Config keys set by this hyperparameter at ``value``."""
        if self.kind == "bundle":
            return dict(dict(self.bundles)[value])
        return {self.key: value} if self.key else {}


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    hyperparameters: Tuple[Hyperparameter, ...]
    derived: Tuple[Tuple[str, str], ...] = ()

    def define(self, hp) -> Dict[str, object]:
        return {parameter.name: parameter.define(hp) for parameter in self.hyperparameters}

    def overrides(self, values: Dict[str, object]) -> Dict[str, object]:
        """``{config key: value}`` for a set of hyperparameter values (derived keys included)."""
        values = {name: tidy(value) for name, value in values.items()}
        settings: Dict[str, object] = {}
        for parameter in self.hyperparameters:
            settings.update(parameter.settings(values[parameter.name]))
        for key, expression in self.derived:
            settings[key] = evaluate(expression, values)
        return settings


def tidy(value):
    """Floats to 12 significant digits: keras-tuner's float steps give 0.30000000000000004."""
    return float(f"{value:.12g}") if isinstance(value, float) else value


# --- loading ------------------------------------------------------------------------------------

def resolve(name: str) -> str:
    """A space path as given, or a bare name looked up in ``tuning/spaces``."""
    if fs.exists(name):
        return name
    for candidate in (name, name + ".yaml"):
        path = os.path.join(SPACE_DIR, candidate)
        if os.path.exists(path):
            return path
    available = sorted(f[:-5] for f in os.listdir(SPACE_DIR) if f.endswith(".yaml"))
    raise UserError(f"--space: no file {name!r} here or in tuning/spaces; available: {', '.join(available)}")


def _number(value):
    """PyYAML reads 1e-4 as a string: accept numeric strings as floats."""
    if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
        return float(value)
    return value


def _one_type(name: str, values) -> Tuple:
    values = tuple(_number(value) for value in values)
    if not values:
        raise UserError(f"space: {name}: the choice list is empty")
    kinds = {bool if isinstance(v, bool) else float if isinstance(v, (int, float)) else type(v) for v in values}
    if len(kinds) != 1 or not kinds <= {bool, float, str}:
        raise UserError(f"space: {name}: choice values must be all numbers, all strings or all booleans "
                        f"(received {list(values)})")
    if kinds == {float} and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        values = tuple(float(v) for v in values)  # keras-tuner wants one type: ints stay ints only together
    return values


def parse_parameter(name: str, spec) -> Hyperparameter:
    if not NAME.match(str(name)):
        raise UserError(f"space: {name!r} is not a valid hyperparameter name (letters, digits, underscore)")
    if not isinstance(spec, dict):
        raise UserError(f"space: {name}: expected a mapping such as {{choice: [...], key: ...}} (received {spec!r})")
    kinds = [kind for kind in KINDS if kind in spec]
    unknown = set(spec) - set(KINDS) - {"key", "step", "sampling"}
    if len(kinds) != 1 or unknown:
        raise UserError(f"space: {name}: expected exactly one of choice / int / float, plus optional key, step, "
                        f"sampling (received keys {sorted(spec)})")
    kind, key = kinds[0], spec.get("key")
    if kind == "choice" and isinstance(spec["choice"], dict):
        if not spec["choice"]:
            raise UserError(f"space: {name}: the choice has no options")
        bundles = tuple((str(label), tuple((str(k), _number(v)) for k, v in (settings or {}).items()))
                        for label, settings in spec["choice"].items())
        return Hyperparameter(name, "bundle", values=tuple(label for label, _ in bundles), bundles=bundles)
    if kind == "choice":
        if not isinstance(spec["choice"], list):
            raise UserError(f"space: {name}: choice expects a list or a mapping of labelled settings")
        return Hyperparameter(name, "choice", key, values=_one_type(name, spec["choice"]))
    bounds = spec[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise UserError(f"space: {name}: {kind} expects [min, max] (received {bounds!r})")
    low, high = (_number(bound) for bound in bounds)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise UserError(f"space: {name}: {kind} bounds must be numbers (received {bounds!r})")
    if low > high:
        raise UserError(f"space: {name}: min {low} is greater than max {high}")
    sampling = spec.get("sampling", "linear")
    if sampling not in ("linear", "log") or (sampling == "log" and low <= 0):
        raise UserError(f"space: {name}: sampling must be linear or log (log needs min > 0)")
    step = _number(spec.get("step"))
    if step is not None and (not isinstance(step, (int, float)) or step <= 0):
        raise UserError(f"space: {name}: step must be a positive number (received {step!r})")
    return Hyperparameter(name, kind, key, low=low, high=high, step=step, sampling=sampling)


def load_space(name: str) -> SearchSpace:
    path = resolve(name)
    raw = read_yaml(path)
    if set(raw) - {"description", "hyperparameters", "derived"}:
        raise UserError(f"{path}: expected the keys description, hyperparameters, derived")
    parameters = raw.get("hyperparameters") or {}
    if not isinstance(parameters, dict) or not parameters:
        raise UserError(f"{path}: the search space is empty (no hyperparameters)")
    derived = raw.get("derived") or {}
    if not isinstance(derived, dict):
        raise UserError(f"{path}: derived expects a mapping of config keys to expressions")
    space = SearchSpace(os.path.splitext(os.path.basename(path))[0], str(raw.get("description", "")),
                        tuple(parse_parameter(n, s) for n, s in parameters.items()),
                        tuple((str(k), str(v)) for k, v in derived.items()))
    names = {p.name for p in space.hyperparameters}
    for key, expression in space.derived:
        missing = expression_names(expression) - names
        if missing:
            raise UserError(f"space: derived {key}: {', '.join(sorted(missing))} is not a hyperparameter "
                            f"(have: {', '.join(sorted(names))})")
    return space


# --- safe arithmetic for derived keys -------------------------------------------------------------

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.USub: operator.neg}
_FUNCTIONS = {"int": int, "round": round, "max": max, "min": min}


def expression_names(expression: str) -> set:
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, RecursionError, MemoryError):  # the last two: nested too deep to parse
        raise UserError(f"space: derived expression {_shown(expression)} is not valid arithmetic") from None
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id not in _FUNCTIONS}


def _shown(expression: str, limit: int = 80) -> str:
    return repr(expression if len(expression) <= limit else expression[:limit] + "…")


MAX_LIST = 1000  # a derived list is a layer list or similar: longer is a mistake, not a model


def _operate(op, left, right):
    """One binary operation; a list repeated past ``MAX_LIST`` items is refused before it is made."""
    lists = [side for side in (left, right) if isinstance(side, list)]
    if lists and type(op) is ast.Mult:
        times = right if lists[0] is left else left
        if isinstance(times, int) and not isinstance(times, bool) and len(lists[0]) * times > MAX_LIST:
            raise ValueError(f"it makes a list of {len(lists[0]) * times} items (at most {MAX_LIST})")
    return _OPERATORS[type(op)](left, right)


def evaluate(expression: str, values: Dict[str, object]):
    """Evaluate numbers, hyperparameter names, + - * / //, lists and int/round/max/min — nothing else.
    Every failure (division by zero, a list grown past ``MAX_LIST``, mixing a list and a number, an
    expression nested too deep) is one :class:`UserError` naming the expression and the values."""

    def visit(node):
        if isinstance(node, ast.Expression):
            return visit(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id in values:
            return values[node.id]
        if isinstance(node, (ast.List, ast.Tuple)):
            return [visit(element) for element in node.elts]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _operate(node.op, visit(node.left), visit(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](visit(node.operand))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
            return _FUNCTIONS[node.func.id](*[visit(argument) for argument in node.args])
        raise UserError(f"space: derived expression {_shown(expression)}: {ast.dump(node)[:60]} is not allowed")

    try:
        return visit(ast.parse(expression, mode="eval"))
    except (ArithmeticError, TypeError, ValueError, RecursionError, MemoryError) as error:
        used = ", ".join(f"{name}={value!r}" for name, value in sorted(values.items())
                         if name in expression_names(expression))
        reason = str(error) or type(error).__name__
        raise UserError(f"space: derived expression {_shown(expression)} fails at {used or 'its constants'}: "
                        f"{reason}") from None


# --- applying to a configuration ---------------------------------------------------------------

def apply(base, overrides: Dict[str, object]):
    """The base configuration with ``{section.key: value}`` set (validated like any config)."""
    raw = to_plain(base)
    for key, value in overrides.items():
        node, parts = raw, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise UserError(f"space: {key!r} is not a configuration key (no section {part!r})")
            node = node[part]
        node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    config = config_from_dict(raw)
    check_config(config)
    return config


def check_space(space: SearchSpace, base) -> None:
    """Every choice, both ends of every range and every derived key give a valid configuration."""
    reference = {p.name: p.corners()[0] for p in space.hyperparameters}
    for parameter in space.hyperparameters:
        if parameter.kind not in ("bundle",) and not parameter.key and not any(
                parameter.name in expression_names(e) for _, e in space.derived):
            raise UserError(f"space: {parameter.name}: no key and not used by a derived setting: it would "
                            "change nothing")
        for value in parameter.corners():
            values = dict(reference, **{parameter.name: value})
            try:
                apply(base, space.overrides(values))
            except UserError as error:
                where = parameter.key or "derived settings"
                raise UserError(f"space {space.name}: {parameter.name} = {value!r} ({where}): {error}") from None


def describe(space: SearchSpace) -> Sequence[str]:
    """One line per hyperparameter, for the README and logs."""
    lines = []
    for p in space.hyperparameters:
        target = p.key or ("bundles" if p.kind == "bundle" else "derived")
        shown = list(p.values) if p.kind in ("choice", "bundle") else f"[{p.low}, {p.high}]" + (
            f" step {p.step}" if p.step else "") + (" log" if p.sampling == "log" else "")
        lines.append(f"{p.name}: {p.kind} {shown} → {target}")
    return lines
