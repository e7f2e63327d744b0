import pandas as pd
import pytest

from ser_models.exceptions import LabelImportError, LabellingPending, OracleError
from ser_models.labelling import FileOracle, Oracle, SimulatedOracle

INFO = pd.DataFrame({"utt_id": ["a", "b", "c"], "path": ["/x/a.wav", "/x/b.wav", "/x/c.wav"],
                     "duration": [1.0, 2.5, 3.0]})


def test_simulated():
    o = SimulatedOracle({"a": "hap", "b": "sad", "c": None})
    assert isinstance(o, Oracle)
    assert o.label(["b", "a"], 0)["label"].to_dict() == {"b": "sad", "a": "hap"}
    with pytest.raises(OracleError, match="'c'"):
        o.label(["a", "c"], 1)


def _fill(path, rows):
    pd.DataFrame(rows, columns=["utt_id", "path", "duration", "label"]).to_csv(path, index=False)


def test_simulated_refuses_labels_outside_the_model_labels():
    oracle = SimulatedOracle({"a": "happy", "b": "oth", "c": None}, labels=["happy", "sad"])
    assert oracle.unlabelable(["a", "b", "c", "d"]) == {"b", "c", "d"}
    assert oracle.label(["a"], round=1)["label"].to_dict() == {"a": "happy"}
    with pytest.raises(OracleError, match=r"'b' \(label 'oth' outside model.labels\)"):
        oracle.label(["a", "b"], round=2)


def test_file_oracle_request_then_import(tmp_path):
    o = FileOracle(tmp_path, ["hap", "sad"], INFO)
    with pytest.raises(LabellingPending, match=r"to_label.csv.*hap, sad.*rerun"):
        o.label(["a", "b"], 2)
    req = pd.read_csv(tmp_path / "to_label.csv", keep_default_na=False)
    assert req.columns.tolist() == ["utt_id", "path", "duration", "label"]
    assert req["utt_id"].tolist() == ["a", "b"] and (req["label"] == "").all()
    _fill(tmp_path / "to_label.csv", [["a", "", 1, "hap"], ["b", "", 2, " sad "]])
    assert o.label(["a", "b"], 2)["label"].to_dict() == {"a": "hap", "b": "sad"}


@pytest.mark.parametrize("rows,pattern", [
    ([["a", "", 1, "joy"], ["b", "", 2, "sad"]], r"line 2 \('a'\): unknown label 'joy'"),
    ([["a", "", 1, "hap"], ["b", "", 2, ""]], r"line 3 \('b'\): empty label"),
    ([["a", "", 1, "hap"]], r"no row for requested id 'b'"),
    ([["a", "", 1, "hap"], ["b", "", 2, "sad"], ["zz", "", 1, "hap"]], r"line 4: unknown utt_id 'zz'"),
    ([["a", "", 1, "hap"], ["a", "", 1, "sad"], ["b", "", 2, "sad"]], r"line 3: utt_id 'a' repeats line 2"),
])
def test_file_oracle_rejects_with_line_numbers(tmp_path, rows, pattern):
    _fill(tmp_path / "to_label.csv", rows)
    with pytest.raises(LabelImportError, match=pattern):
        FileOracle(tmp_path, ["hap", "sad"], INFO).label(["a", "b"], 0)


TRUTH = pd.DataFrame({"utt_id": ["a", "b", "c"], "label": ["hap", None, "sad"], "arousal": [4.0, 2.0, None],
                      "valence": [3.5, 1.5, 2.0]})


def test_simulated_hands_out_dimensions_and_skips_clips_without_them():
    dims_only = SimulatedOracle(TRUTH, labels=[], dimensions=["arousal", "valence"])
    assert dims_only.unlabelable(["a", "b", "c", "z"]) == {"c", "z"}
    got = dims_only.label(["b", "a"], 0)
    assert got.index.tolist() == ["b", "a"] and got["label"].isna().all()
    assert got[["arousal", "valence"]].to_numpy().tolist() == [[2.0, 1.5], [4.0, 3.5]]
    both = SimulatedOracle(TRUTH, labels=["hap", "sad"], dimensions=["arousal"])
    assert both.unlabelable(["a", "b", "c"]) == {"b", "c"}
    with pytest.raises(OracleError, match=r"'b' \(no true label\).*'c' \(no arousal value\)"):
        both.label(["a", "b", "c"], 3)
    with pytest.raises(OracleError, match="dominance"):
        SimulatedOracle(TRUTH, dimensions=["dominance"])


def test_file_oracle_with_dimensions_checks_every_value(tmp_path):
    o = FileOracle(tmp_path, ["hap", "sad"], INFO, dimensions=["arousal", "valence"], value_range=(1, 5))
    with pytest.raises(LabellingPending, match=r"'label', 'arousal', 'valence' column\(s\) of .*hap, sad; arousal, valence: numbers in \[1, 5\]"):
        o.label(["a", "b"], 1)
    req = pd.read_csv(tmp_path / "to_label.csv", keep_default_na=False)
    assert req.columns.tolist() == ["utt_id", "path", "duration", "label", "arousal", "valence"]
    cols = req.columns.tolist()
    bad = [["a", "", 1, "hap", "5.5", "3"], ["b", "", 2, "sad", "", "x"], ["c", "", 3, "sad", "2", "2"]]
    pd.DataFrame(bad, columns=cols).to_csv(tmp_path / "to_label.csv", index=False)
    with pytest.raises(LabelImportError) as err:
        o.label(["a", "b"], 1)
    text = str(err.value)
    assert "line 2 ('a'): arousal 5.5 is outside [1, 5]" in text
    assert "line 3 ('b'): arousal is empty; valence is not a number: 'x'" in text
    assert text.index("line 3 ('b')") < text.index("line 4: unknown utt_id 'c'")
    good = [["a", "", 1, "hap", "4.5", "3"], ["b", "", 2, "sad", "1", "2.25"]]
    pd.DataFrame(good, columns=cols).to_csv(tmp_path / "to_label.csv", index=False)
    got = o.label(["b", "a"], 1)
    assert got.to_dict("index") == {"b": {"label": "sad", "arousal": 1.0, "valence": 2.25},
                                    "a": {"label": "hap", "arousal": 4.5, "valence": 3.0}}
    dims_only = FileOracle(tmp_path / "r2", [], INFO, dimensions=["valence"])
    with pytest.raises(LabellingPending):
        dims_only.label(["c"], 2)
    assert pd.read_csv(tmp_path / "r2" / "to_label.csv").columns.tolist() == ["utt_id", "path", "duration", "valence"]


def test_as_annotations_accepts_a_label_dict_and_checks_columns():
    from ser_models.labelling.oracles import as_annotations

    frame = as_annotations({"x": "hap", "y": "sad"}, ["y", "x"])
    assert frame.index.tolist() == ["y", "x"] and frame["label"].tolist() == ["sad", "hap"]
    with pytest.raises(OracleError, match=r"lacks ids \['z'\]"):
        as_annotations({"x": "hap"}, ["x", "z"])
    with pytest.raises(OracleError, match=r"dimension columns \['arousal'\]"):
        as_annotations({"x": "hap"}, ["x"], ["arousal"])


def test_check_annotations_refuses_what_the_model_cannot_train_on():
    from ser_models.labelling.oracles import as_annotations, check_annotations

    frame = pd.DataFrame({"label": ["hap", None, "joy"], "arousal": [3.0, 6.0, None]}, index=["a", "b", "c"])
    check_annotations(frame.loc[["a"]], ["hap", "sad"], ["arousal"], (1, 5), "x")  # a clean row passes
    with pytest.raises(OracleError, match=r"custom, round 2: 2 labels missing or outside model.labels=\['hap', "
                                          r"'sad'\]: 'b' \(nan\), 'c' \('joy'\); 2 arousal values .*'b' \(6.0\)"):
        check_annotations(frame, ["hap", "sad"], ["arousal"], (1, 5), "custom, round 2")
    check_annotations(as_annotations({"a": None}, ["a"]), [], [], (1, 5), "x")  # no classes: labels unchecked


def test_label_studio_config_checks_and_interface():
    from xml.etree import ElementTree

    from ser_models.exceptions import ConfigError
    from ser_models.labelling.config import LabelStudioConfig
    from ser_models.labelling.label_studio_oracle import label_config_xml

    for bad, key in ((dict(aggregate="mean"), "aggregate"), (dict(on_disagreement="vote"), "on_disagreement"),
                     (dict(audio="ftp"), "audio"), (dict(annotators=0), "annotators"),
                     (dict(annotators=3, max_annotations=2), "max_annotations"), (dict(min_agreement=1.5), "min_agreement"),
                     (dict(audio="local_files"), "local_files_root")):
        with pytest.raises(ConfigError, match=key):
            LabelStudioConfig(**bad)
    assert LabelStudioConfig(annotators=2).annotation_cap == 4
    xml = label_config_xml(['a"b', "<sad>"], ["arousal"], (1.0, 7.0))
    root = ElementTree.fromstring(xml)  # well-formed despite the quotes and brackets in class names
    assert [c.get("value") for c in root.iter("Choice")] == ['a"b', "<sad>"]
    number = next(root.iter("Number"))
    assert (number.get("name"), number.get("min"), number.get("max"), number.get("slider")) == ("arousal", "1", "7", "true")
    assert next(root.iter("Audio")).get("value") == "$audio"


def test_file_oracle_request_shows_details_after_the_columns_to_fill_and_ignores_them_on_import(tmp_path):
    details = pd.DataFrame({"model_guess": ["sad", None], "model_confidence": [0.81, None], "score": [0.37, None],
                            "reason": ["margin: top-2 gap 0.630", "initial set (random)"]},
                           index=pd.Index(["a", "b"], name="utt_id"))
    o = FileOracle(tmp_path, ["hap", "sad"], INFO, dimensions=["arousal"], request="the evaluation sets")
    with pytest.raises(LabellingPending, match=r"^the evaluation sets: 2 clips need labels"):
        o.label(["a", "b"], 0, details=details)
    req = pd.read_csv(tmp_path / "to_label.csv", keep_default_na=False)
    assert req.columns.tolist() == ["utt_id", "path", "duration", "label", "arousal", "model_guess",
                                    "model_confidence", "score", "reason"]
    assert req["model_guess"].tolist() == ["sad", ""] and req["model_confidence"].astype(str).tolist() == ["0.81", ""]
    assert req["reason"].tolist() == ["margin: top-2 gap 0.630", "initial set (random)"]
    # a person fills the label columns (and scribbles in another); the rest is read back never
    req["label"] = ["hap", "sad"]
    req["arousal"] = [2.0, 4.5]
    req["model_guess"] = ["whatever", "notes"]
    req["note"] = ["loud", ""]
    req.to_csv(tmp_path / "to_label.csv", index=False)
    frame = o.label(["a", "b"], 0)
    assert frame.columns.tolist() == ["label", "arousal"]
    assert frame["label"].to_dict() == {"a": "hap", "b": "sad"} and frame["arousal"].tolist() == [2.0, 4.5]
