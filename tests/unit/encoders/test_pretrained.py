"""``model.encoder.source=smart-turn``: the pretrained encoder by name, imported once into the encoder cache,
verified by hash on reuse, re-imported when its files change, and an offline error that says what to do."""

from __future__ import annotations

import json

import pytest

from ser_models.encoders import pretrained
from ser_models.encoders.config import EncoderConfig
from ser_models.encoders.factory import build_encoder
from ser_models.encoders.smart_turn import EncoderImportError, fetch_wheel


@pytest.fixture
def cache(tmp_path, monkeypatch, smart_turn_dir):
    """An empty encoder cache, and the wheel the session already fetched offered as a local wheel."""
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "encoders"))
    monkeypatch.setenv(pretrained.WHEEL_ENV, str(fetch_wheel(smart_turn_dir.parents[1], quiet=True)))
    monkeypatch.setattr(pretrained, "_verified", {})
    return tmp_path / "encoders"


def test_the_default_is_imported_once_then_reused_after_its_hash_checks(cache, smart_turn_dir, capsys):
    from ser_models.runs.after import AfterJobConfig

    cfg = AfterJobConfig(pool_dir="p", output_dir="o")  # a config of paths alone
    assert cfg.model.encoder.source == EncoderConfig().source == "smart-turn"  # the pretrained encoder by default
    pretrained.resolve_encoder_names(cfg)
    folder = cache / "smart-turn-v3.2-whisper-tiny"
    assert cfg.model.encoder.source == str(folder)
    assert "importing the Smart Turn v3.2 Whisper-tiny encoder" in capsys.readouterr().out
    stamp = json.loads((folder / "import.json").read_text())
    from ser_models.encoders.content_hash import hash_files

    assert stamp[pretrained.HASH_KEY] == hash_files(folder) == hash_files(smart_turn_dir)  # the same weights
    weights = (folder / "model.safetensors").stat().st_mtime_ns
    pretrained._verified.clear()  # a new process: verified again, not imported again
    assert pretrained.pretrained_folder("smart-turn-v3.2") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == weights
    assert "importing" not in capsys.readouterr().out


def test_a_changed_file_is_imported_again(cache):
    folder = pretrained.pretrained_folder("smart-turn", quiet=True)
    good = json.loads((folder / "import.json").read_text())[pretrained.HASH_KEY]
    with open(folder / "model.safetensors", "r+b") as fh:  # one flipped byte in the weights
        fh.seek(4096)
        byte = fh.read(1)
        fh.seek(4096)
        fh.write(bytes([byte[0] ^ 0xFF]))
    pretrained._verified.clear()
    assert pretrained.pretrained_folder("smart-turn", quiet=True) == folder
    from ser_models.encoders.content_hash import hash_files

    assert hash_files(folder) == good


def test_an_encoder_built_from_the_name_is_the_pretrained_one(cache):
    encoder = build_encoder(EncoderConfig(source="smart-turn"))
    assert encoder.family == "whisper" and encoder.cfg.source == str(cache / "smart-turn-v3.2-whisper-tiny")


def test_when_the_import_fails_the_error_names_the_local_wheel_import(tmp_path, monkeypatch):
    """No wheel to import from (offline, the fetch fails the same way: an EncoderImportError from the import):
    a typed error that says how to import from a local wheel, and nothing half-written in the cache."""
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "enc"))
    monkeypatch.setenv(pretrained.WHEEL_ENV, str(tmp_path / "no-such-wheel.whl"))
    monkeypatch.setattr(pretrained, "_verified", {})
    with pytest.raises(EncoderImportError) as err:
        pretrained.pretrained_folder("smart-turn", quiet=True)
    message = str(err.value)
    assert "model.encoder.source=smart-turn" in message and "no-such-wheel.whl" in message
    assert f"ser-models import-encoder smart-turn {tmp_path / 'enc' / 'smart-turn-v3.2-whisper-tiny'} --source" in message
    assert pretrained.WHEEL_ENV in message and pretrained.CACHE_ENV in message
    assert not (tmp_path / "enc" / "smart-turn-v3.2-whisper-tiny" / "model.safetensors").exists()


def test_other_sources_are_left_as_they_are(cache):
    cfg = EncoderConfig(source="tiny-whisper")
    assert pretrained.resolve_encoder_names(cfg).source == "tiny-whisper"
    with pytest.raises(EncoderImportError.__mro__[1], match="no pretrained encoder named 'nope'"):
        pretrained.pretrained_folder("nope")
    assert not cache.exists()


def test_an_import_made_by_hand_into_the_cache_is_adopted_offline(cache, monkeypatch, capsys):
    """The offline route the error names: `ser-models import-encoder smart-turn <cache folder> --source WHEEL`,
    then the name resolves to it without fetching (an older import without a recorded hash gets one)."""
    from ser_models.encoders.smart_turn import import_smart_turn

    folder = cache / "smart-turn-v3.2-whisper-tiny"
    import_smart_turn(folder, pretrained.os.environ[pretrained.WHEEL_ENV], quiet=True)
    stamp = json.loads((folder / "import.json").read_text())
    assert stamp[pretrained.HASH_KEY]  # imports record their hash
    del stamp[pretrained.HASH_KEY]  # as an import made before they did
    (folder / "import.json").write_text(json.dumps(stamp))
    weights = (folder / "model.safetensors").stat().st_mtime_ns
    monkeypatch.delenv(pretrained.WHEEL_ENV)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no fetch possible
    assert pretrained.pretrained_folder("smart-turn") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == weights and "importing" not in capsys.readouterr().out
    assert json.loads((folder / "import.json").read_text())[pretrained.HASH_KEY]


def test_a_sweeps_base_config_and_a_teacher_are_resolved_in_the_driver(cache):
    """A sweep's base config is a plain dict: its encoder (and a distillation teacher) are resolved before any
    trial starts, so trials on other nodes get the folder; other 'source' keys (a language) are left alone."""
    from ser_models.catalog.recipes import find_recipe
    from ser_models.config import load_config
    from ser_models.tune.config import SweepConfig

    sweep = load_config(SweepConfig, find_recipe("sweep_anchoring_demo"), ["output_dir=o"])
    assert sweep.config["model"]["encoder"]["source"] == "smart-turn"
    language = sweep.config.get("source")
    pretrained.resolve_encoder_names(sweep)
    folder = str(cache / "smart-turn-v3.2-whisper-tiny")
    assert sweep.config["model"]["encoder"]["source"] == folder and sweep.config.get("source") == language
    teacher = {"teacher": {"source": "smart-turn"}, "encoder_source": "smart-turn", "other": {"source": "en"}}
    assert pretrained.resolve_encoder_names(teacher) == {"teacher": {"source": folder}, "encoder_source": folder,
                                                        "other": {"source": "en"}}


def test_a_cache_that_cannot_be_written_and_holds_no_import_is_named(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(pretrained.CACHE_ENV, str(blocker / "encoders"))
    monkeypatch.setattr(pretrained, "_verified", {})
    with pytest.raises(EncoderImportError.__mro__[1], match=f"the encoder cache {blocker / 'encoders'} cannot be written .*"
                                                            f"{pretrained.CACHE_ENV}"):
        pretrained.pretrained_folder("smart-turn")


def test_dotted_keys_and_a_search_over_encoders_are_resolved(cache):
    folder = str(cache / "smart-turn-v3.2-whisper-tiny")
    cfg = {"config": {"model.encoder.source": "smart-turn"},
           "search": {"model.encoder.source": {"choice": ["smart-turn", "tiny-wav2vec2"]}}}
    assert pretrained.resolve_encoder_names(cfg) == {
        "config": {"model.encoder.source": folder},
        "search": {"model.encoder.source": {"choice": [folder, "tiny-wav2vec2"]}}}
