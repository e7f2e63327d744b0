"""A run folder records what shapes its results and refuses a rerun that would mix two configs."""

from __future__ import annotations

import json

import pytest

from ser_models import provenance
from ser_models.cli import run_job
from ser_models.exceptions import ConfigError, ForeignFolderError, PoolError
from ser_models.ownership import claim_output
from ser_models.provenance import RUN_FILE


def check_run(folder, job, *args, **kwargs):
    """``provenance.check_run`` as a job calls it: on a folder it has claimed (and holds) first."""
    with claim_output(folder, "run"):
        return provenance.check_run(folder, job, *args, **kwargs)


def test_a_job_that_did_not_claim_its_folder_writes_nothing_there(tmp_path):
    (tmp_path / "config.yaml").write_text("mine: 1\n")
    with pytest.raises(ForeignFolderError, match="has not claimed it"):
        provenance.check_run(tmp_path, "jobs.after", CFG, config_yaml="a: 1\n")
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
    assert (tmp_path / "config.yaml").read_text() == "mine: 1\n"

CFG = {"output_dir": "x", "scaling": {"num_workers": 1}, "active": {"strategy": {"name": "entropy"},
                                                                   "scorer": {"num_actors": 1, "mc_samples": 0}},
       "train": {"optim": {"epochs": 3}, "lr_head": 1e-3}, "budget": [0.1, 0.2]}


def _with(**changes):
    cfg = json.loads(json.dumps(CFG))
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


SPEED = ("output_dir", "scaling.num_workers", "active.scorer.*")  # what a dict config names as speed-only


def test_first_start_records_then_identical_and_speed_only_reruns_pass(tmp_path):
    assert check_run(tmp_path, "jobs.after", CFG, inputs={"pool": "abc"}, config_yaml="a: 1\n",
                     extra_speed_only=SPEED) is True
    record = json.loads((tmp_path / RUN_FILE).read_text())
    assert record["job"] == "jobs.after" and record["inputs"] == {"pool": "abc"}
    assert "train.optim.epochs" in record["config"] and "scaling.num_workers" not in record["config"]
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"
    faster = _with(scaling__num_workers=4, active__scorer__num_actors=3, output_dir="elsewhere")
    assert check_run(tmp_path, "jobs.after", faster, inputs={"pool": "abc"}, config_yaml="b: 2\n",
                     extra_speed_only=SPEED) is False
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"  # the first start's config is kept


def test_the_job_schemas_mark_exactly_the_keys_that_never_change_a_result():
    """``speed_only`` field flags, read from the schemas (nested configs included)."""
    from ser_models.config import speed_only_keys
    from ser_models.runs.after import AfterJobConfig
    from ser_models.runs.finetune import FinetuneJobConfig
    from ser_models.tune.config import SweepConfig

    # scaling.num_workers (each replica's batch, the all-reduce) and scaling.use_gpu (other kernels) change results
    scaling = {"scaling.cpus_per_worker", "scaling.max_failures", "scaling.backend"}
    encoder = {"model.encoder.allow_download", "model.encoder.gradient_checkpointing", "model.text.allow_download"}
    assert set(speed_only_keys(FinetuneJobConfig)) == {"output_dir", "pool_dir", "train.eval_batch_size", *scaling,
                                                      "feature_cache_dir", *encoder}
    label_studio = {f"active.label_studio.{k}" for k in ("url", "api_key_env", "project", "audio", "local_files_root",
                                                          "wait", "poll_seconds", "wait_timeout_s", "timeout_s",
                                                          "allow_insecure_http")}
    assert set(speed_only_keys(AfterJobConfig)) == {
        "output_dir", "pool_dir", "train.eval_batch_size", *scaling, *encoder, *label_studio,
        "active.scorer.micro_batch_size", "active.scorer.batch_size",
        "active.scorer.num_actors", "active.scorer.num_cpus", "active.scorer.threads", "active.scorer.functionals_stage",
        "active.strategy.num_threads", "active.feature_cache", "active.feature_cache_dir",
        "active.feature_cache_layers",
        # the labels forecast reads the finished rounds; it changes no label, model or selection
        "active.forecast.target_ua", "active.forecast.flat_gain", "active.forecast.bootstrap",
        # with or without Ray: the same scores bit for bit, and the same files (tests/integration/test_label_rerun.py)
        "runtime.ray"}
    from ser_models.runs.evidence import EvidenceJobConfig

    assert set(speed_only_keys(EvidenceJobConfig)) == {*speed_only_keys(AfterJobConfig),
                                                       "evidence.cache_in_memory_mb", "evidence.fan_out",
                                                       "evidence.concurrency", "evidence.cpus_per_run"}
    # max_concurrent_trials changes which trials ASHA stops and what TPE proposes next: a result key
    assert set(speed_only_keys(SweepConfig)) == {"output_dir", "name", "max_failures", "tracking.*", "top_k"}


def test_a_dataclass_config_may_change_its_speed_only_keys_but_nothing_else(tmp_path):
    from ser_models.runs.finetune import FinetuneJobConfig

    cfg = FinetuneJobConfig(pool_dir="/p", output_dir=str(tmp_path))
    check_run(tmp_path, "jobs.finetune", cfg)
    cfg.scaling.cpus_per_worker, cfg.pool_dir, cfg.train.eval_batch_size = 4, "/moved/p", 64
    assert check_run(tmp_path, "jobs.finetune", cfg) is False
    cfg.train.optim.epochs += 1
    with pytest.raises(ConfigError, match="train.optim.epochs"):
        check_run(tmp_path, "jobs.finetune", cfg)


@pytest.mark.parametrize("changes, named", [
    ({"active__strategy__name": "badge"}, "active.strategy.name: 'entropy' -> 'badge'"),
    ({"train__lr_head": 1e-4}, "train.lr_head: 0.001 -> 0.0001"),
    ({"budget": [0.1, 0.3]}, "budget: [0.1, 0.2] -> [0.1, 0.3]"),
    ({"active__scorer__mc_samples": 4}, "active.scorer.mc_samples: 0 -> 4"),
])
def test_a_result_changing_key_is_refused_by_name(tmp_path, changes, named):
    check_run(tmp_path, "jobs.after", CFG)
    with pytest.raises(ConfigError) as info:
        check_run(tmp_path, "jobs.after", _with(**changes))
    assert named in str(info.value) and "new output_dir" in str(info.value)


def test_a_changed_pool_or_another_job_is_refused(tmp_path):
    check_run(tmp_path, "jobs.after", CFG, inputs={"pool": "abc"})
    with pytest.raises(ConfigError, match="input pool: 'abc' -> 'def'"):
        check_run(tmp_path, "jobs.after", CFG, inputs={"pool": "def"})
    with pytest.raises(ConfigError, match="holds a jobs.after run; jobs.finetune needs its own"):
        check_run(tmp_path, "jobs.finetune", CFG, inputs={"pool": "abc"})


def test_jobs_end_a_typed_error_with_one_line_and_exit_code_2(monkeypatch, capsys):
    def main():
        raise PoolError("pool at /x is incomplete")

    monkeypatch.delenv("SER_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as info:
        run_job(main)
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: PoolError: pool at /x is incomplete\n"
    monkeypatch.setenv("SER_TRACEBACK", "1")
    with pytest.raises(PoolError):
        run_job(main)
    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: it keeps its traceback
        run_job(lambda: 1 / 0)


def test_a_key_added_since_the_record_passes_at_its_default_and_is_refused_otherwise(tmp_path):
    # A run recorded by an older version lacks the keys added since (here model.adapter.add): resuming it
    # must work while they keep their defaults, and name them when they do not.
    from ser_models.config import load_config, to_dict
    from ser_models.provenance import flatten
    from ser_models.runs.finetune import FinetuneJobConfig

    cfg = load_config(FinetuneJobConfig, overrides=["pool_dir=/p", f"output_dir={tmp_path}"])
    check_run(tmp_path, "jobs.finetune", cfg)
    record = json.loads((tmp_path / RUN_FILE).read_text())
    assert record["config"]["model.adapter.add"] == [] and "model.adapter.bottleneck_dim" in record["config"]
    for key in ("model.adapter.add", "model.adapter.bottleneck_dim"):
        del record["config"][key]
    (tmp_path / RUN_FILE).write_text(json.dumps(record))
    assert check_run(tmp_path, "jobs.finetune", cfg) is False
    changed = load_config(FinetuneJobConfig, overrides=["pool_dir=/p", f"output_dir={tmp_path}",
                                                         "model.adapter.add=[gating]"])
    with pytest.raises(ConfigError, match=r"older version .* did not record model.adapter.add .* this start sets "
                                          r"model.adapter.add=\[\"gating\"\]"):
        check_run(tmp_path, "jobs.finetune", changed)
    assert flatten(to_dict(cfg))["model.adapter.bottleneck_dim"] == 32


def _older_record(tmp_path, *missing: str, overrides=()):
    """A finetune run folder whose run.json, as an older version wrote it, lacks the ``missing`` keys."""
    from ser_models.config import load_config
    from ser_models.runs.finetune import FinetuneJobConfig

    def config(*more):
        return load_config(FinetuneJobConfig, overrides=["pool_dir=/p", f"output_dir={tmp_path}", *overrides, *more])

    check_run(tmp_path, "jobs.finetune", config(), log=lambda line: None)
    record = json.loads((tmp_path / RUN_FILE).read_text())
    for key in missing:
        del record["config"][key]
    (tmp_path / RUN_FILE).write_text(json.dumps(record))
    return config


def test_an_older_record_without_a_result_key_resumes_at_its_default_and_says_so(tmp_path):
    config = _older_record(tmp_path, "scaling.use_gpu", "scaling.num_workers")
    lines = []
    assert check_run(tmp_path, "jobs.finetune", config(), log=lines.append) is False
    assert len(lines) == 1 and "older version" in lines[0]
    assert "scaling.use_gpu (assumed to be its default, False" in lines[0]
    assert "scaling.num_workers (assumed to be its default, 1" in lines[0]


def test_an_older_record_without_a_result_key_refuses_another_value_naming_key_value_and_way_out(tmp_path):
    from ser_models.exceptions import ResumeMismatchError

    config = _older_record(tmp_path, "scaling.use_gpu")
    with pytest.raises(ResumeMismatchError) as info:
        check_run(tmp_path, "jobs.finetune", config("scaling.use_gpu=true"))
    message = str(info.value)
    assert "written by an older version of the platform that did not record scaling.use_gpu" in message
    assert "this start sets scaling.use_gpu=true" in message and "default, scaling.use_gpu=false" in message
    assert "rerun with scaling.use_gpu=false" in message and '"scaling.use_gpu": true under "config"' in message
    assert "-> " not in message  # not told as a change from a recorded value
    assert info.value.changes == [("scaling.use_gpu", "<not recorded>", True)]
    # The way out it names works: recording the value the first start used lets this start resume.
    record = json.loads((tmp_path / RUN_FILE).read_text())
    record["config"]["scaling.use_gpu"] = True
    (tmp_path / RUN_FILE).write_text(json.dumps(record))
    assert check_run(tmp_path, "jobs.finetune", config("scaling.use_gpu=true")) is False


def test_an_older_record_lacking_one_key_and_differing_in_another_names_both(tmp_path):
    config = _older_record(tmp_path, "scaling.num_workers")
    with pytest.raises(ConfigError) as info:
        check_run(tmp_path, "jobs.finetune", config("scaling.num_workers=2", "train.optim.epochs=7"))
    message = str(info.value)
    assert "train.optim.epochs: " in message and "did not record scaling.num_workers" in message
    assert "this start sets scaling.num_workers=2" in message


def test_a_run_record_never_holds_the_user_info_of_a_url(tmp_path):
    cfg = _with(output_dir="s3://AKIAXX:s3cr3t@bucket/run")
    cfg["manifest"] = "https://u:pw@host/m.csv"
    check_run(tmp_path, "jobs.after", cfg)
    text = (tmp_path / RUN_FILE).read_text()
    assert "s3cr3t" not in text and "pw@" not in text and "https://host/m.csv" in text
    assert check_run(tmp_path, "jobs.after", cfg) is False  # the same start resumes
