import pandas as pd
import pytest

from ser_models.active import FileOracle, Oracle, SimulatedOracle
from ser_models.exceptions import LabelImportError, LabellingPending, OracleError

INFO = pd.DataFrame({"utt_id": ["a", "b", "c"], "path": ["/x/a.wav", "/x/b.wav", "/x/c.wav"],
                     "duration": [1.0, 2.5, 3.0]})


def test_simulated():
    o = SimulatedOracle({"a": "hap", "b": "sad", "c": None})
    assert isinstance(o, Oracle)
    assert o.label(["b", "a"], 0) == {"b": "sad", "a": "hap"}
    with pytest.raises(OracleError, match="'c'"):
        o.label(["a", "c"], 1)


def _fill(path, rows):
    pd.DataFrame(rows, columns=["utt_id", "path", "duration", "label"]).to_csv(path, index=False)


def test_simulated_refuses_labels_outside_the_model_labels():
    oracle = SimulatedOracle({"a": "happy", "b": "oth", "c": None}, labels=["happy", "sad"])
    assert oracle.unlabelable(["a", "b", "c", "d"]) == {"b", "c", "d"}
    assert oracle.label(["a"], round=1) == {"a": "happy"}
    with pytest.raises(OracleError, match=r"outside model.labels.*'b' \('oth'\)"):
        oracle.label(["a", "b"], round=2)


def test_file_oracle_request_then_import(tmp_path):
    o = FileOracle(tmp_path, ["hap", "sad"], INFO)
    with pytest.raises(LabellingPending, match=r"to_label.csv.*hap, sad.*rerun"):
        o.label(["a", "b"], 2)
    req = pd.read_csv(tmp_path / "to_label.csv", keep_default_na=False)
    assert req.columns.tolist() == ["utt_id", "path", "duration", "label"]
    assert req["utt_id"].tolist() == ["a", "b"] and (req["label"] == "").all()
    _fill(tmp_path / "to_label.csv", [["a", "", 1, "hap"], ["b", "", 2, " sad "]])
    assert o.label(["a", "b"], 2) == {"a": "hap", "b": "sad"}


@pytest.mark.parametrize("rows,pattern", [
    ([["a", "", 1, "joy"], ["b", "", 2, "sad"]], r"line 2: unknown label 'joy'"),
    ([["a", "", 1, "hap"], ["b", "", 2, ""]], r"line 3: empty label for 'b'"),
    ([["a", "", 1, "hap"]], r"missing rows .*'b'"),
    ([["a", "", 1, "hap"], ["b", "", 2, "sad"], ["zz", "", 1, "hap"]], r"line 4: unknown utt_id 'zz'"),
    ([["a", "", 1, "hap"], ["a", "", 1, "sad"], ["b", "", 2, "sad"]], r"line 3: utt_id 'a' repeats line 2"),
])
def test_file_oracle_rejects_with_line_numbers(tmp_path, rows, pattern):
    _fill(tmp_path / "to_label.csv", rows)
    with pytest.raises(LabelImportError, match=pattern):
        FileOracle(tmp_path, ["hap", "sad"], INFO).label(["a", "b"], 0)
