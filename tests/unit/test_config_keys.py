"""Every config key says what it may change (result, speed or location), and the checks that keep a run, a
resume and a cache honest cover exactly the result keys."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import pkgutil
import types
import typing

import pytest

import jobs
from ser_models.config import EFFECTS, RESULT, SPEED, field, key_effects, keys_with_effect


def _job_schemas() -> dict[str, type]:
    """``{job module: config dataclass}`` of every job under ``jobs/`` that parses a config (the class its
    module hands to ``parse_job_args``, as the docs' jobs reference finds it)."""
    out = {}
    for info in pkgutil.iter_modules(jobs.__path__):
        name = f"jobs.{info.name}"
        # The module that defines the job's main (a jobs/ shell hands on ser_models.runs.<job>.main).
        code = importlib.import_module(name).main.__module__
        source = importlib.util.find_spec(code).loader.get_source(code) or ""
        if "parse_job_args(" not in source:
            continue
        module = importlib.import_module(code)
        found = [getattr(module, attr) for attr in dir(module)
                 if attr.endswith("Config") and f"parse_job_args({attr}," in source]
        assert len(found) == 1, f"{name}: cannot tell its config class ({found})"
        out[name] = found[0]
    return out


JOB_SCHEMAS = _job_schemas()


def _dataclasses_in(hint) -> list[type]:
    """The dataclasses a type hint names (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if dataclasses.is_dataclass(hint):
        return [hint]
    return [c for arg in typing.get_args(hint) for c in _dataclasses_in(arg)]


def _walk(schema: type, prefix: str = "", inherited: str | None = None) -> list[tuple[str, str, str | None, bool]]:
    """Every field of ``schema`` and of every dataclass its fields hold (nested configs, lists and dicts of
    them), recursively, as ``(dotted key, Class.field, effect, nested)``: the effect is the field's own or the one
    an enclosing field gives every key below it; ``nested`` marks a nested config (its keys are the leaves)."""
    rows = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key, effect = f"{prefix}{f.name}", inherited or f.metadata.get("effect")
        nested = f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())
        rows.append((key, f"{schema.__qualname__}.{f.name}", effect, nested))
        for inner in _dataclasses_in(hints[f.name]):
            rows += _walk(inner, f"{key}.", effect)
    return rows


def unclassified(schema: type) -> list[str]:
    """``Class.field (dotted key)`` of every field under ``schema`` that says nothing of what it changes."""
    return sorted({f"{name} ({key})" for key, name, effect, nested in _walk(schema)
                   if effect not in EFFECTS and not nested})


def test_the_walk_finds_every_job_and_the_nested_configs():
    assert {"jobs.after", "jobs.finetune", "jobs.prepare_pool", "jobs.segment", "jobs.sweep", "jobs.predict",
            "jobs.evidence", "jobs.tapt", "jobs.plan"} <= set(JOB_SCHEMAS)
    rows = {(job, key): effect for job, schema in JOB_SCHEMAS.items() for key, _, effect, _ in _walk(schema)}
    assert rows["jobs.after", "active.scorer.precision"] == RESULT
    assert rows["jobs.segment", "rules.min_length"] == RESULT
    assert rows["jobs.sweep", "tracking.mlflow"] == SPEED  # covered by its nested config's mark
    assert len(rows) > 400


def test_every_config_field_of_every_job_is_classified():
    """A key that does not say whether it changes results would be recorded, hashed and compared by accident
    (or not at all): a new key must carry ``field(effect=RESULT | SPEED | LOCATION)``. A nested config may
    carry one for every key below it (``SweepConfig.tracking``); one without leaves it to its own keys."""
    missing = {f"{job}: {row}" for job, schema in JOB_SCHEMAS.items() for row in unclassified(schema)}
    assert not missing, "config fields without field(effect=...): " + "; ".join(sorted(missing))


@dataclasses.dataclass
class _Inner:
    rate: float = field(0.1, effect=RESULT, help="a rate")
    workers: int = field(1, help="new and unclassified")


@dataclasses.dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner, help="nested: its keys classify themselves")
    items: list[_Inner] = field(default_factory=list, help="a list of configs, unclassified")
    covered: _Inner = field(default_factory=_Inner, effect=SPEED, help="covers every key below it")
    plain: int = 3


def test_the_check_names_a_field_that_is_not_classified():
    assert unclassified(_Outer) == ["_Inner.workers (inner.workers)", "_Inner.workers (items.workers)",
                                    "_Outer.items (items)", "_Outer.plain (plain)"]
    assert key_effects(_Outer) == {"inner.rate": RESULT, "inner.workers": None, "items": None,
                                   "covered.rate": SPEED, "covered.workers": SPEED, "plain": None}


def test_every_leaf_key_of_every_job_has_an_effect():
    """What the run record and the resume check read: no leaf key is left to a default."""
    missing = sorted(f"{job}: {key}" for job, schema in JOB_SCHEMAS.items()
                     for key, effect in key_effects(schema).items() if effect not in EFFECTS)
    assert not missing, "keys with no effect: " + ", ".join(missing)
def _changed(value, hint):
    """Another value of a config key of type ``hint`` (what the resume check compares: it reads values, it does
    not validate them)."""
    if value is None or value == []:  # unset or empty -> set, as its type allows
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kind = [a for a in typing.get_args(hint) if a is not type(None)][0] if optional else hint
        if typing.get_origin(kind) is list:
            return [_changed(None, typing.get_args(kind)[0] | None)]
        return {int: 3, float: 0.5, str: "other", bool: True}[kind]
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 3
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list):
        return [*value, value[0]]  # a copy of an element has the element type
    if isinstance(value, dict):
        return {**value, "other": 1}
    raise AssertionError(f"no other value for {value!r}")


def _hint(schema: type, dotted: str):
    """The type hint of a dotted key of ``schema``."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        schema = typing.get_type_hints(schema)[part]
    return typing.get_type_hints(schema)[leaf]


def _set(cfg, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for part in parents:
        node = getattr(node, part)
    setattr(node, leaf, value)


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _after_config(tmp_path):
    from ser_models.config import load_config
    from ser_models.runs.after import AfterJobConfig

    return load_config(AfterJobConfig, "jobs/configs/after_smoke.yaml",
                       [f"pool_dir={tmp_path / 'pool'}", f"output_dir={tmp_path / 'run'}"])


def test_resuming_a_jobs_after_folder_accepts_every_speed_key_and_refuses_every_result_key_by_name(tmp_path):
    """Each leaf key of ``jobs.after`` changed alone on a second start: a result key is refused with a
    ``ResumeMismatchError`` naming it with its recorded and new value; a speed or location key resumes. (The
    first start records the schema's config as the job does; the later ones pass it as a dict with the schema's
    speed-only patterns, the same comparison without OmegaConf's 0.5 s per config.)"""
    from ser_models.config import speed_only_keys, to_dict
    from ser_models.exceptions import ResumeMismatchError
    from ser_models.runs.after import AfterJobConfig
    from ser_models.testing import claimed_check_run as check_run

    run, first = tmp_path / "run", _after_config(tmp_path)
    assert check_run(run, "jobs.after", first, inputs={"pool": "L"}) is True
    recorded, patterns = to_dict(first), speed_only_keys(AfterJobConfig)
    refused, resumed = [], []
    for key, effect in key_effects(AfterJobConfig).items():
        cfg = copy.deepcopy(recorded)
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        old = node[leaf]
        node[leaf] = new = _changed(old, _hint(AfterJobConfig, key))
        try:
            check_run(run, "jobs.after", cfg, inputs={"pool": "L"}, extra_speed_only=patterns)
            resumed.append(key)
            assert effect != RESULT, f"{key} is result-changing but a resume that changed it passed"
        except ResumeMismatchError as exc:
            refused.append(key)
            assert effect == RESULT, f"{key} is {effect} but a resume that changed it was refused: {exc}"
            assert exc.changes == [(key, old, new)]
            assert f"{key}: {old!r} -> {new!r}" in str(exc)
    assert {"active.scorer.precision", "active.scorer.allow_tf32", "active.scorer.max_seconds",
            "active.scorer.num_gpus", "scaling.num_workers", "scaling.use_gpu", "train.precision"} <= set(refused)
    assert {"active.scorer.micro_batch_size", "active.scorer.num_actors", "scaling.cpus_per_worker",
            "pool_dir", "output_dir", "active.feature_cache_dir"} <= set(resumed)
    assert len(refused) + len(resumed) == len(key_effects(AfterJobConfig))


@pytest.mark.parametrize("key, value", [("active.scorer.precision", "bf16"), ("active.scorer.max_seconds", 4.0),
                                        ("scaling.num_workers", 2), ("scaling.use_gpu", True)])
def test_a_changed_result_key_of_the_job_config_is_refused_naming_it(tmp_path, key, value):
    from ser_models.exceptions import ResumeMismatchError
    from ser_models.testing import claimed_check_run as check_run

    run = tmp_path / "run"
    check_run(run, "jobs.after", _after_config(tmp_path))
    cfg = _after_config(tmp_path)
    old = _get(cfg, key)
    _set(cfg, key, value)
    with pytest.raises(ResumeMismatchError) as info:
        check_run(run, "jobs.after", cfg)
    assert info.value.changes == [(key, old, value)] and f"{key}: {old!r} -> {value!r}" in str(info.value)


def test_a_resume_may_change_all_speed_keys_at_once(tmp_path):
    from ser_models.config import LOCATION
    from ser_models.runs.after import AfterJobConfig
    from ser_models.testing import claimed_check_run as check_run

    run = tmp_path / "run"
    check_run(run, "jobs.after", _after_config(tmp_path))
    cfg = _after_config(tmp_path)
    for key, effect in key_effects(AfterJobConfig).items():
        if effect in (SPEED, LOCATION):
            _set(cfg, key, _changed(_get(cfg, key), _hint(AfterJobConfig, key)))
    assert check_run(run, "jobs.after", cfg) is False


#: A valid other value of every ``ScorerConfig`` key (each needs a decision here when it is added).
SCORER_CHANGES = {"batch_size": 7, "micro_batch_size": 4, "num_actors": 3, "num_cpus": 2.0, "threads": 3,
                  "num_gpus": 1.0, "mc_samples": 4, "max_seconds": 5.0, "precision": "bf16", "allow_tf32": False,
                  "functionals_stage": "separate"}


@pytest.fixture(scope="module")
def tiny_encoder():
    from ser_models.encoders import build_encoder
    from ser_models.testing import tiny_model_config

    return build_encoder(tiny_model_config(adapter="frozen").encoder)


class _Pool:
    """What the cache key reads of a ``Pool``: its lineage (a real pool is built in the integration test)."""

    lineage = "lineage-1"


def test_the_feature_cache_key_changes_with_every_result_key_that_reaches_the_features(tiny_encoder):
    """``precision``, ``allow_tf32``, ``max_seconds`` and the device name another cache; speed keys and
    ``mc_samples`` (the head's, not the encoder's) keep it."""
    from ser_models.scoring.cache_keys import SCORER_KEYS_NOT_IN_FEATURES, feature_cache_key
    from ser_models.scoring.scorer import ScorerConfig

    assert set(SCORER_CHANGES) == {f.name for f in dataclasses.fields(ScorerConfig)}
    assert set(SCORER_KEYS_NOT_IN_FEATURES) <= set(keys_with_effect(ScorerConfig, RESULT))
    base = feature_cache_key(_Pool(), tiny_encoder, ScorerConfig())
    assert feature_cache_key(_Pool(), tiny_encoder) == base  # None = the defaults, as FeatureCache.build takes it
    in_key = set()
    for name, value in SCORER_CHANGES.items():
        if feature_cache_key(_Pool(), tiny_encoder, ScorerConfig(**{name: value})) != base:
            in_key.add(name)
    assert in_key == set(keys_with_effect(ScorerConfig, RESULT)) - set(SCORER_KEYS_NOT_IN_FEATURES)
    assert {"precision", "allow_tf32", "max_seconds", "num_gpus"} <= in_key
    # a share of one GPU or a whole one: the same device, the same features
    assert feature_cache_key(_Pool(), tiny_encoder, ScorerConfig(num_gpus=0.5)) == \
        feature_cache_key(_Pool(), tiny_encoder, ScorerConfig(num_gpus=1.0))


def test_the_pool_fingerprint_holds_every_result_key_of_the_pool_config():
    """``PoolConfig.content_fields`` (the pool fingerprint's config part) is exactly its result keys, but the
    two files whose path and bytes the fingerprint hashes itself (``manifest``, ``label_map``)."""
    from ser_models.data.config import PoolConfig

    cfg = PoolConfig(manifest="m.csv")
    assert set(cfg.content_fields()) == set(keys_with_effect(PoolConfig, RESULT)) - {"manifest", "label_map"}


def test_help_and_the_jobs_reference_show_each_keys_effect():
    from ser_models.config import describe
    from ser_models.runs.after import AfterJobConfig

    text = describe(AfterJobConfig)
    assert "active.scorer.precision = 'fp32'  # [result]" in text
    assert "active.scorer.num_actors = 1  # [speed]" in text and "output_dir = '???'  # [location]" in text
