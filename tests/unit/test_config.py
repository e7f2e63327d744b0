import dataclasses
import os
import re
from dataclasses import dataclass

import pytest

from ser_models.config import (
    PATH,
    PATH_OR_NAME,
    describe,
    field,
    from_dict,
    load_config,
    parse_job_args,
    path_kind,
    resolve_path_value,
    resolve_paths,
    to_dict,
)
from ser_models.encoders.config import EncoderConfig
from ser_models.exceptions import ConfigError
from ser_models.runs.after import AfterJobConfig


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


def test_extends_layers_a_config_over_another_file(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "root.yaml").write_text("path: /root\nsteps: 1\ninner:\n  rate: 0.2\n  names: [r]\n")
    (tmp_path / "base" / "mid.yaml").write_text("extends: root.yaml\nsteps: 2\n")
    top = tmp_path / "top.yaml"
    top.write_text("extends: base/mid.yaml\ninner:\n  rate: 0.3\n")  # relative to the file's own folder
    cfg = load_config(Outer, top, ["steps=9"])
    assert (cfg.path, cfg.steps, cfg.inner.rate, cfg.inner.names) == ("/root", 9, 0.3, ["r"])
    assert load_config(Outer, top).steps == 2
    (tmp_path / "loop.yaml").write_text("extends: top2.yaml\n")
    (tmp_path / "top2.yaml").write_text("extends: loop.yaml\npath: /x\n")
    with pytest.raises(ConfigError, match="'extends' loops back"):
        load_config(Outer, tmp_path / "top2.yaml")
    (tmp_path / "lost.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere.yaml \(extended by .*lost.yaml\)"):
        load_config(Outer, tmp_path / "lost.yaml")
    (tmp_path / "bad.yaml").write_text("extends: [a.yaml]\n")
    with pytest.raises(ConfigError, match="'extends' must name a YAML file"):
        load_config(Outer, tmp_path / "bad.yaml")


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
    assert re.search(r"path +=  ?\?\?\?  required path", out) and re.search(r"steps += 3  steps", out)
    assert "inner.rate" not in out and "2 more keys: --help-all" in out
    with pytest.raises(SystemExit):
        parse_job_args(Outer, ["--help-all"], "jobs.x")
    out = capsys.readouterr().out
    assert "inner.rate = 0.1  [changes results]" in out and "a rate" in out
    assert "inner.rate = 0.1" in describe(Outer)


# ---- relative paths: resolved once, in the driver, against the folder the command ran from -----------------


@dataclass
class Paths:
    name_or_path: str = field("tiny-preset", path=PATH_OR_NAME, help="a preset, a hub id or a local folder")
    labels: list[str] = field(default_factory=list, help="not a path")


@dataclass
class Job:
    pool_dir: str = field("", path=PATH, help="a folder")
    output_dir: str = field("out", path=PATH, help="a folder")
    note: str = field("some/words", help="a plain string that looks like a path")
    inner: Paths = field(default_factory=Paths, help="nested")


def test_resolve_paths_makes_relative_local_paths_absolute(tmp_path, monkeypatch):
    (tmp_path / "enc").mkdir()
    cfg = Job(pool_dir="pools/a/../b", output_dir="s3://bucket/run", inner=Paths("enc"))
    out = resolve_paths(cfg, tmp_path)
    assert out.pool_dir == str(tmp_path / "pools" / "b")
    assert out.output_dir == "s3://bucket/run"  # URIs are never touched
    assert out.note == "some/words"  # only fields marked path=
    assert out.inner.name_or_path == str(tmp_path / "enc")  # an existing folder
    assert cfg.pool_dir == "pools/a/../b"  # a copy: the input is unchanged
    for name in ("facebook/wav2vec2-base", "tiny-whisper"):  # a hub id or preset stays a name
        assert resolve_paths(Job(inner=Paths(name)), tmp_path).inner.name_or_path == name
    assert resolve_paths(Job(pool_dir="/abs/p"), tmp_path).pool_dir == "/abs/p"
    assert resolve_paths(Job(pool_dir=""), tmp_path).pool_dir == ""  # unset stays unset
    assert resolve_paths(Job(pool_dir="~/p"), tmp_path).pool_dir == os.path.expanduser("~/p")
    monkeypatch.chdir(tmp_path)  # the default: the current folder
    assert resolve_paths(Job()).output_dir == str(tmp_path / "out")


def test_parse_job_args_resolves_paths_against_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse_job_args(Job, ["pool_dir=outputs/demo/pool"], "jobs.x")
    assert cfg.pool_dir == str(tmp_path / "outputs" / "demo" / "pool")
    assert resolve_path_value(Job, "inner.name_or_path", "tiny-preset") == "tiny-preset"
    assert resolve_path_value(Job, "pool_dir", "p") == str(tmp_path / "p")
    assert resolve_path_value(Job, "note", "p") == "p"


def _schemas() -> list[type]:
    """Every config dataclass of the library and the jobs (those whose fields carry help strings)."""
    import importlib
    import pkgutil

    import jobs
    import ser_models

    found = []
    for pkg in (ser_models, jobs):
        for info in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}."):
            if info.name.endswith(("testing", "testing_label_studio")):
                continue
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if (isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__
                        and any("help" in f.metadata for f in dataclasses.fields(obj))):
                    found.append(obj)
    return found


def test_every_path_key_of_every_job_is_marked_as_a_path():
    """A path key left unmarked would be read relative to a Tune trial's folder (issue: sweeps that fail as
    written); the names below are the project's path keys."""
    schemas = _schemas()
    assert len(schemas) > 20
    unmarked = [f"{s.__module__}.{s.__name__}.{f.name}" for s in schemas for f in dataclasses.fields(s)
                if (f.name.endswith("_dir") or f.name in ("manifest", "checkpoint", "init_checkpoint",
                                                           "feature_stats", "speaker_stats", "label_map"))
                and not f.metadata.get("path")]
    assert unmarked == []
    assert path_kind(EncoderConfig, "source") == PATH_OR_NAME
    assert path_kind(AfterJobConfig, "model.encoder.source") == PATH_OR_NAME
    assert path_kind(AfterJobConfig, "active.feature_cache_dir") == PATH


def test_an_empty_override_is_an_empty_string_as_the_shell_passes_it():
    # `pool_dir=''` in a shell reaches the job as `pool_dir=`
    assert load_config(Outer, None, ["path="]).path == ""
    with pytest.raises(ConfigError, match="steps"):
        load_config(Outer, None, ["path=p", "steps="])


def test_a_label_studio_url_with_a_password_is_refused_and_never_written():
    """A URL with ``user:pass@`` was written verbatim to config.yaml."""
    from ser_models.exceptions import ConfigError
    from ser_models.labelling.config import LabelStudioConfig

    with pytest.raises(ConfigError, match=r"user name or password.*\$LABEL_STUDIO_API_KEY"):
        LabelStudioConfig(url="https://ann:hunter2@labelstudio.internal")
    assert LabelStudioConfig(url="https://labelstudio.internal/path@x").url.endswith("@x")  # '@' in the path is fine


def test_config_yaml_never_holds_the_user_info_of_a_url():
    from ser_models.config import strip_user_info, to_yaml
    from ser_models.data.config import PoolConfig

    text = to_yaml(PoolConfig(manifest="s3://AKIAXX:s3cr3t@bucket/m.csv", output_dir="https://u:pw@host/pool"))
    assert "s3cr3t" not in text and "AKIAXX" not in text and "pw@" not in text
    assert "manifest: s3://bucket/m.csv" in text and "output_dir: https://host/pool" in text
    assert strip_user_info({"a": ["http://x:y@h/p", "plain@text"]}) == {"a": ["http://h/p", "plain@text"]}


def test_a_renamed_key_is_refused_with_its_new_name(tmp_path):
    """One concept has one key name: an old name is an error that names the new one, from an override, a file
    (named in the message) or a dict, and never a silent alias."""
    from ser_models.config import from_dict, renamed_keys
    from ser_models.planning.planner import PlanConfig

    assert renamed_keys(PlanConfig) == {"target_half_width": "half_width", "max_pool_share": "max_share"}
    with pytest.raises(ConfigError, match=r"'target_half_width' is now called 'half_width'"):
        load_config(PlanConfig, overrides=["target_half_width=0.1"])
    recipe = tmp_path / "plan.yaml"
    recipe.write_text("budget: 400\nmax_pool_share: 0.5\n")
    with pytest.raises(ConfigError, match=r"'max_pool_share' is now called 'max_share' \(file .*plan\.yaml\)"):
        load_config(PlanConfig, recipe)
    with pytest.raises(ConfigError, match="is now called 'half_width'"):
        from_dict(PlanConfig, {"target_half_width": 0.1})
    assert load_config(PlanConfig, overrides=["budget=400", "half_width=0.1", "max_share=0.5"]).max_share == 0.5


def test_renamed_keys_are_found_in_nested_configs():
    import dataclasses as dc
    from typing import ClassVar

    from ser_models.config import renamed_keys

    @dc.dataclass
    class Inner:
        RENAMED: ClassVar[dict[str, str]] = {"old": "new"}
        new: int = 1

    @dc.dataclass
    class Outer:
        inner: Inner = dc.field(default_factory=Inner)

    assert renamed_keys(Outer) == {"inner.old": "inner.new"}
    with pytest.raises(ConfigError, match=r"'inner\.old' is now called 'inner\.new'"):
        load_config(Outer, overrides=["inner.old=2"])
    assert load_config(Outer, overrides=["inner.new=2"]).inner.new == 2


def test_the_optimiser_keys_moved_into_optim_are_refused_with_their_new_names(tmp_path):
    """train, tapt, tapt.adapter and distill share one optimiser node, ``optim``: their old flat keys are errors
    naming the key under ``optim`` (train.lr_adapter is now train.optim.lr), from an override, a recipe file or
    a dict."""
    from ser_models.config import renamed_keys
    from ser_models.pretraining.tapt_config import TaptJobConfig
    from ser_models.runs.distill import DistillJobConfig
    from ser_models.runs.finetune import FinetuneJobConfig

    renamed = renamed_keys(FinetuneJobConfig)
    assert renamed["train.lr_adapter"] == "train.optim.lr" and renamed["train.epochs"] == "train.optim.epochs"
    assert "train.lr_head" not in renamed  # the head's own rate stays beside the optimiser
    with pytest.raises(ConfigError, match=r"'train\.lr_adapter' is now called 'train\.optim\.lr'"):
        load_config(FinetuneJobConfig, overrides=["pool_dir=/p", "output_dir=/o", "train.lr_adapter=1e-3"])
    with pytest.raises(ConfigError, match=r"'tapt\.adapter\.epochs' is now called 'tapt\.adapter\.optim\.epochs'"):
        load_config(TaptJobConfig, overrides=["pool_dir=/p", "output_dir=/o", "tapt.adapter.epochs=2"])
    recipe = tmp_path / "tapt.yaml"
    recipe.write_text("pool_dir: /p\noutput_dir: /o\ntapt:\n  objective: auto\n  lr: 1.0e-4\n")
    with pytest.raises(ConfigError, match=r"'tapt\.lr' is now called 'tapt\.optim\.lr' \(file .*tapt\.yaml\)"):
        load_config(TaptJobConfig, recipe)
    with pytest.raises(ConfigError, match=r"'distill\.max_crop_seconds' is now called 'distill\.optim\.max_crop_seconds'"):
        from_dict(DistillJobConfig, {"pool_dir": "/p", "output_dir": "/o", "distill": {"max_crop_seconds": 2.0}})
    from ser_models.tune.space import check_against, parse_search

    base = {"pool_dir": "/p", "output_dir": "/o"}
    with pytest.raises(ConfigError, match=r"search\.train\.lr_adapter: .*is now called 'train\.optim\.lr'"):
        check_against(parse_search({"train.lr_adapter": {"choice": [1e-3]}}), FinetuneJobConfig, base)
    cfg = load_config(FinetuneJobConfig, overrides=["pool_dir=/p", "output_dir=/o", "train.optim.lr=1e-3",
                                                    "train.optim.epochs=2"])
    assert (cfg.train.optim.lr, cfg.train.optim.epochs, cfg.train.lr_head) == (1e-3, 2, 1e-3)


def test_each_optim_owner_keeps_its_own_defaults_and_optim_validates_its_keys():
    from ser_models.config import key_default
    from ser_models.pretraining.distill import DistillConfig
    from ser_models.pretraining.tapt_config import AdapterPretrainConfig, TaptConfig, TaptJobConfig
    from ser_models.training.config import OptimConfig, TrainConfig

    assert (TrainConfig().optim.epochs, TrainConfig().optim.lr, TrainConfig().optim.max_crop_seconds) == (10, 5e-4, 4.0)
    assert (TaptConfig().optim.epochs, TaptConfig().optim.lr, TaptConfig().optim.max_crop_seconds) == (5, 5e-5, 8.0)
    adapter = AdapterPretrainConfig().optim
    assert (adapter.epochs, adapter.batch_size, adapter.lr, adapter.max_crop_seconds) == (20, 16, 5e-4, 8.0)
    distill = DistillConfig().optim
    assert (distill.lr, distill.weight_decay, distill.grad_clip) == (2e-4, 0.0, 10.0)
    assert key_default(TaptJobConfig, "tapt.optim.lr") == 5e-5  # the owner's default, not OptimConfig's
    assert key_default(TaptJobConfig, "tapt.adapter.optim.epochs") == 20
    for bad, key in [({"epochs": 0}, "optim.epochs"), ({"lr": 0.0}, "optim.lr"), ({"grad_clip": -1.0}, "optim.grad_clip"),
                     ({"max_crop_seconds": 0.0}, "optim.max_crop_seconds"),
                     ({"warmup_ratio": 0.7, "hold_ratio": 0.5}, "optim.warmup_ratio")]:
        with pytest.raises(ConfigError, match=re.escape(key)):
            OptimConfig(**bad)
    with pytest.raises(ConfigError, match=r"optim\.batch_size"):
        load_config(TaptJobConfig, overrides=["pool_dir=/p", "output_dir=/o", "tapt.optim.batch_size=0"])


def test_a_renamed_key_in_an_extended_recipe_names_that_recipe(tmp_path):
    from ser_models.planning.planner import PlanConfig

    (tmp_path / "base.yaml").write_text("max_pool_share: 0.5\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nbudget: 400\n")
    with pytest.raises(ConfigError, match=r"'max_pool_share' is now called 'max_share' \(file .*base\.yaml\)"):
        load_config(PlanConfig, tmp_path / "child.yaml")
