"""The ``search`` block of a sweep: dotted config keys, their distributions and conditions.

A sweep YAML names keys of the base job's config and how to sample each::

    search:
      model.adapter.kind: {choice: [lora, ia3, frozen]}
      model.adapter.r: {choice: [4, 8, 16], when: {model.adapter.kind: lora}}
      train.optim.lr: {loguniform: [1.0e-4, 1.0e-2]}
      train.optim.batch_size: {grid: [8, 16]}

Distributions: ``choice``, ``grid``, ``uniform``, ``loguniform`` (``[low, high]``), ``randint`` (``[low, high)``)
and ``qrandint`` (``[low, high, q]``, high included). ``when`` maps other keys to a value or a list of values;
a key whose condition does not hold keeps the base config's value in that trial and is recorded as missing.

Conditions are applied by the trial, not by Tune's sampler, so every search algorithm (random, grid, Optuna)
sees a flat space; grid keys are expanded here instead, skipping combinations that differ only in inactive keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from ser_models.config import from_dict, renamed_keys
from ser_models.exceptions import ConfigError
from ser_models.provenance import flatten

#: distribution name -> number of values its list holds (None = any number >= 1)
DISTRIBUTIONS = {"choice": None, "grid": None, "uniform": 2, "loguniform": 2, "randint": 2, "qrandint": 3}
#: Tune config key holding one expanded grid combination (a dict of dotted key -> value).
GRID_KEY = "__grid__"
_MISSING = object()


@dataclass(frozen=True)
class SearchParam:
    """One swept key.

    Attributes:
        key: dotted key of the base job's config (``model.adapter.r``).
        kind: one of :data:`DISTRIBUTIONS`.
        values: the distribution's list (choices, or bounds).
        when: ``{other key: allowed values}``; empty = always active.
    """

    key: str
    kind: str
    values: tuple
    when: tuple[tuple[str, tuple], ...] = ()

    def active(self, config: Mapping[str, Any]) -> bool:
        """Whether this key applies to a trial whose swept and base values are ``config`` (dotted keys)."""
        return all(config.get(k, _MISSING) in allowed for k, allowed in self.when)

    def tune_domain(self):
        """The Ray Tune sampler of this key (grid keys are expanded by :func:`grid_combinations` instead)."""
        from ray import tune

        v = self.values
        if self.kind == "choice":
            return tune.choice(list(v))
        if self.kind == "uniform":
            return tune.uniform(v[0], v[1])
        if self.kind == "loguniform":
            return tune.loguniform(v[0], v[1])
        if self.kind == "randint":
            return tune.randint(v[0], v[1])
        if self.kind == "qrandint":
            return tune.qrandint(v[0], v[1], v[2])
        raise ConfigError(f"search.{self.key}: {self.kind} has no Tune sampler here")

    def sample_points(self) -> list:
        """Values that together exercise the distribution's range (for up-front validation)."""
        if self.kind in ("choice", "grid"):
            return list(self.values)
        if self.kind == "randint":
            return [self.values[0], self.values[1] - 1]
        return [self.values[0], self.values[1]]


def parse_search(search: Mapping[str, Any]) -> list[SearchParam]:
    """Read the ``search`` block into :class:`SearchParam` s (format checks only; see :func:`check_against`).

    Raises:
        ConfigError: an empty block, an unknown distribution, a wrong number of values, bad bounds or a
            malformed ``when``, naming the ``search.<key>``.
    """
    search = _flatten_search(search or {})
    if not search:
        raise ConfigError("search is empty: name at least one config key to sweep, e.g. "
                          "search: {train.lr_head: {loguniform: [1.0e-4, 1.0e-2]}}")
    params = []
    for key, spec in search.items():
        where = f"search.{key}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} must be a mapping like {{choice: [a, b]}}, got {spec!r}")
        spec = dict(spec)
        when = spec.pop("when", None) or {}
        kinds = [k for k in spec if k in DISTRIBUTIONS]
        unknown = [k for k in spec if k not in DISTRIBUTIONS]
        if unknown or len(kinds) != 1:
            raise ConfigError(f"{where}: expected exactly one of {sorted(DISTRIBUTIONS)} (plus optional 'when'), "
                              f"got {sorted(spec)}")
        kind = kinds[0]
        values = spec[kind]
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{where}.{kind} must be a non-empty list, got {values!r}")
        want = DISTRIBUTIONS[kind]
        if want is not None and len(values) != want:
            raise ConfigError(f"{where}.{kind} takes {want} numbers, got {list(values)}")
        if want is not None:
            _check_bounds(where, kind, values)
        if not isinstance(when, Mapping):
            raise ConfigError(f"{where}.when must map keys to a value or a list of values, got {when!r}")
        conds = tuple((str(k), tuple(v) if isinstance(v, (list, tuple)) else (v,)) for k, v in when.items())
        params.append(SearchParam(str(key), kind, tuple(_plain(v) for v in values), conds))
    keys = {p.key for p in params}
    for p in params:
        for k, _ in p.when:
            if k == p.key:
                raise ConfigError(f"search.{p.key}.when refers to the key itself")
            if k in keys and any(q.key == k and q.when for q in params):
                raise ConfigError(f"search.{p.key}.when names {k}, which has a condition itself: "
                                  "conditions may only name unconditional keys")
    return params


def _flatten_search(search: Mapping, prefix: str = "") -> dict:
    """Dotted keys from nested mappings too (``search.train.lr_head=...`` on the command line nests)."""
    out: dict = {}
    for key, spec in search.items():
        name = f"{prefix}{key}"
        if (isinstance(spec, Mapping) and spec and not any(k in DISTRIBUTIONS or k == "when" for k in spec)
                and all(isinstance(v, Mapping) for v in spec.values())):
            out.update(_flatten_search(spec, f"{name}."))
        else:
            out[name] = spec
    return out


def _check_bounds(where: str, kind: str, values) -> None:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{where}.{kind} takes numbers, got {list(values)}")
    low, high = values[0], values[1]
    if kind in ("randint", "qrandint") and not all(float(v).is_integer() for v in values):
        raise ConfigError(f"{where}.{kind} takes integers, got {list(values)}")
    if not low < high:
        raise ConfigError(f"{where}.{kind}: low must be below high, got {list(values)}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.loguniform needs low > 0, got {low}")
    if kind == "qrandint" and (values[2] < 1 or (high - low) % values[2]):
        raise ConfigError(f"{where}.qrandint: q must be >= 1 and divide high - low, got {list(values)}")


def _plain(value):
    """OmegaConf containers to plain Python (lists stay lists, so a choice may be a list of modules)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def check_against(params: list[SearchParam], schema: type, base: dict, prefix: str = "config") -> None:
    """Every swept and conditioning key exists in the base config, and every value it can take validates.

    Args:
        params: the parsed search block.
        schema: the base job's config dataclass.
        base: the base job's config as a plain dict (already valid).
        prefix: how the base config block is named in error messages.

    Raises:
        ConfigError: naming ``search.<key>`` and the base job, before any trial starts.
    """
    conf = OmegaConf.create(base)
    renamed = renamed_keys(schema)
    for p in params:
        for key in (p.key, *(k for k, _ in p.when)):
            if key in renamed:
                raise ConfigError(f"search.{p.key}: config key {key!r} is now called {renamed[key]!r}: rename it")
            got = OmegaConf.select(conf, key, default=_MISSING)
            if got is _MISSING:
                raise ConfigError(f"search.{p.key}: {key!r} is not a key of the base job's config "
                                  f"({schema.__name__}); see `python -m jobs.<base> --help` for the keys")
            if OmegaConf.is_dict(got):
                raise ConfigError(f"search.{p.key}: {key!r} is a config section, not a value; sweep one of its "
                                  "keys instead")
        for value in p.sample_points():
            try:
                apply_values(schema, base, {p.key: value})
            except ConfigError as exc:
                raise ConfigError(f"search.{p.key}: value {value!r} is invalid for the base job: {exc}") from None


def apply_values(schema: type, base: dict, values: Mapping[str, Any]):
    """The base config with dotted ``values`` set, validated as a config of ``schema`` (returns the instance)."""
    conf = OmegaConf.create(base)
    for key, value in values.items():
        OmegaConf.update(conf, key, value, merge=False)
    return from_dict(schema, OmegaConf.to_container(conf, resolve=True))


def grid_combinations(params: list[SearchParam], base: dict) -> list[dict]:
    """Every combination of the ``grid`` keys, inactive keys left out (so no two combinations train alike).

    Conditions on a grid key may name other grid keys or base values; a grid key conditioned on a sampled
    (non-grid) key is expanded as if active and filtered by the trial.
    """
    grid = [p for p in params if p.kind == "grid"]
    if not grid:
        return []
    flat = flatten(base)
    seen, combos = set(), []
    for values in itertools.product(*(p.values for p in grid)):
        combo = dict(zip((p.key for p in grid), values))
        view = {**flat, **combo}
        kept = {}
        for p in grid:
            names_grid_only = all(k in combo or k not in {q.key for q in params} for k, _ in p.when)
            if not names_grid_only or p.active(view):
                kept[p.key] = combo[p.key]
        ident = repr(sorted(kept.items()))
        if ident not in seen:
            seen.add(ident)
            combos.append(kept)
    return combos


def param_space(params: list[SearchParam], base: dict, search_alg: str) -> dict:
    """The Tune ``param_space``: one sampler per non-grid key, plus the expanded grid under :data:`GRID_KEY`.

    Raises:
        ConfigError: ``grid`` keys with Optuna (TPE samples; it cannot enumerate a grid), or a ``grid``
            search whose keys are continuous.
    """
    from ray import tune

    if search_alg == "grid":
        bad = [p.key for p in params if p.kind not in ("choice", "grid")]
        if bad:
            raise ConfigError(f"search_alg=grid needs choice or grid keys only; {bad} are sampled distributions")
        params = [SearchParam(p.key, "grid", p.values, p.when) for p in params]
    if search_alg == "optuna":
        grid = [p.key for p in params if p.kind == "grid"]
        if grid:
            raise ConfigError(f"search_alg=optuna samples every key; {grid} use 'grid': use 'choice' instead")
    space = {p.key: p.tune_domain() for p in params if p.kind != "grid"}
    combos = grid_combinations(params, base)
    if combos:
        space[GRID_KEY] = tune.grid_search(combos)
    return space


def trial_values(params: list[SearchParam], base: dict, config: Mapping[str, Any]) -> dict:
    """The dotted values a trial applies: its sampled values and grid combination, inactive keys dropped."""
    sampled = {k: _plain(v) for k, v in config.items() if k != GRID_KEY}
    sampled.update(dict(config.get(GRID_KEY) or {}))
    view = {**flatten(base), **sampled}
    return {p.key: sampled[p.key] for p in params if p.key in sampled and p.active(view)}


def grid_size(params: list[SearchParam], base: dict, search_alg: str) -> int:
    """Trials per sample: the number of grid combinations (1 without grid keys)."""
    if search_alg == "grid":
        params = [SearchParam(p.key, "grid", p.values, p.when) for p in params]
    return max(len(grid_combinations(params, base)), 1)
