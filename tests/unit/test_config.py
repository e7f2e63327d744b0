from dataclasses import dataclass

import pytest

from ser_models.config import describe, field, from_dict, load_config, parse_job_args, to_dict
from ser_models.exceptions import ConfigError


@dataclass
class Inner:
    rate: float = field(0.1, help="a rate")
    names: list[str] = field(default_factory=lambda: ["a"], help="names")

    def __post_init__(self):
        if self.rate <= 0:
            raise ConfigError(f"inner.rate must be > 0, got {self.rate}")


@dataclass
class Outer:
    path: str = field(help="required path")
    steps: int = field(3, help="steps")
    inner: Inner = field(default_factory=Inner, help="nested")


def test_yaml_and_overrides_merge(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("path: /data\ninner:\n  rate: 0.5\n")
    cfg = load_config(Outer, y, ["steps=7", "inner.names=[x,y]"])
    assert isinstance(cfg, Outer) and isinstance(cfg.inner, Inner)
    assert (cfg.path, cfg.steps, cfg.inner.rate, cfg.inner.names) == ("/data", 7, 0.5, ["x", "y"])
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="inner.rte"):
        load_config(Outer, None, ["path=p", "inner.rte=1"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="steps"):
        load_config(Outer, None, ["path=p", "steps=many"])


def test_missing_required_is_named():
    with pytest.raises(ConfigError, match="path"):
        load_config(Outer, None, [])


def test_post_init_validation_surfaces():
    with pytest.raises(ConfigError, match="inner.rate must be > 0"):
        load_config(Outer, None, ["path=p", "inner.rate=-1"])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(Outer, None, ["steps"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_parse_job_args_help(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_job_args(Outer, ["--help"], "jobs.x")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "inner.rate" in out and "a rate" in out
    assert "inner.rate = 0.1" in describe(Outer)
