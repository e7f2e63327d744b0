"""Oracle hand-over for the loop: which oracle labels a round, the clips it can never label, and how its
answers reach the ledger (``labels/ledger.parquet``) or the dropped list (``labels/dropped.parquet``).

The drawn evaluation sets (:mod:`~ser_models.planning.evaluation_sets`) go through the same hand-over as one
request of their own, before the initial set: the file oracle writes ``rounds/evaluation/to_label.csv``, Label
Studio gets a project of its own (``<project> (evaluation)``), the simulated oracle answers at once, and the
labels enter the ledger with purpose ``test`` / ``dev``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from ser_models.active.loop_config import ActiveConfig
from ser_models.active.scores import REGRESSION_SCORES, SCORES
from ser_models.active.training_clips import TrainingClips
from ser_models.data.ledger import LabelLedger
from ser_models.exceptions import LabellingPending
from ser_models.io import StoragePath, exists, read_parquet, write_parquet_atomic
from ser_models.labelling.clips import CLIP_COLUMNS, segment_clips
from ser_models.labelling.label_studio_oracle import LabelStudioOracle
from ser_models.labelling.oracles import (
    DETAIL_COLUMNS,
    FileOracle,
    SimulatedOracle,
    as_annotations,
    check_annotations,
)
from ser_models.scoring.score_shards import ScoreShards


def model_guesses(scores, ids: list[str], labels: list[str], dimensions: list[str]) -> pd.DataFrame | None:
    """The model's guess for each of ``ids`` from a round's pool scores, for annotators to see.

    Args:
        scores: :class:`~ser_models.scoring.scorer.Scores` of the round's model (holds every training clip).
        ids: the clips about to be labelled.
        labels / dimensions: ``model.labels`` / ``model.dimensions``.

    Returns:
        index ``utt_id``; ``label`` (the arg-max class) and ``score`` (its probability) with classes, one column
        per dimension with dimensions; None when ``scores`` is None (the initial set has no model yet).
    """
    if scores is None or not ids:
        return None
    pos = pd.Index(scores.ids.astype(str)).get_indexer([str(i) for i in ids])
    keep = pos >= 0
    frame = pd.DataFrame(index=pd.Index([str(i) for i, k in zip(ids, keep) if k], name="utt_id"))
    if labels and scores.probs.shape[1]:
        probs = scores.probs[pos[keep]]
        top = probs.argmax(axis=1)
        frame["label"] = [labels[int(k)] for k in top]
        frame["score"] = probs[np.arange(len(top)), top].astype(float)
    if dimensions and scores.dims is not None:
        for j, dim in enumerate(dimensions):
            frame[dim] = scores.dims[pos[keep], j].astype(float)
    return frame if len(frame.columns) else None


def request_name(r: int, evaluation: bool = False) -> str:
    """Names a request in messages by the folder it lives in: ``the evaluation sets``, ``the initial set``
    (``rounds/initial``) or ``round 3`` (``rounds/round=003``: the clips round 3 picked, which round 4 trains
    on), the number every round line and request file of that round shows."""
    return "the evaluation sets" if evaluation else "the initial set" if r < 0 else f"round {r}"


def simulated_oracle(pool, labels: list[str], dimensions: list[str]) -> SimulatedOracle:
    """The simulated annotator of a pool: its training split's own labels (the only reader of them)."""
    truth = pool.metadata(columns=["utt_id", "label", *dimensions], split="train")
    return SimulatedOracle(truth, labels=labels, dimensions=dimensions)


#: Strategies that rank by ``active.strategy.uncertainty`` before their diversity step.
_RANKS_BY_UNCERTAINTY = ("informative_diverse", "kmeans")


def request_details(ids: list[str], reason: str | list[str], guesses: pd.DataFrame | None = None, scores=None,
                    strategy: str | None = None, uncertainty: str = "entropy") -> pd.DataFrame:
    """What a request file shows people about each clip (:data:`~ser_models.labelling.oracles.DETAIL_COLUMNS`).

    Args:
        ids: the clips asked for.
        reason: why they were asked (one text for all, or one per id); with ``strategy`` the score is appended.
        guesses: :func:`model_guesses` (``label`` and ``score`` = its probability, and/or dimension columns).
        scores: the round's :class:`~ser_models.scoring.scorer.Scores` (the strategy's uncertainty is computed
            from them for the picked clips; before dividing by duration when ``cost_aware``).
        strategy: the strategy that picked them (``auto``: the one it chose); None = no strategy score.
        uncertainty: ``active.strategy.uncertainty`` (what informative_diverse and kmeans rank by).

    Returns:
        index ``utt_id``: ``model_guess`` (class, or ``dim value`` pairs), ``model_confidence`` (the guessed
        class's probability), ``score`` (the strategy's uncertainty score, higher = more uncertain) and ``reason``
        (e.g. ``margin: top-2 gap 0.031``); None where there is none.
    """
    ids = [str(i) for i in ids]
    frame = pd.DataFrame(index=pd.Index(ids, name="utt_id"), columns=list(DETAIL_COLUMNS), dtype=object)
    frame["reason"] = reason if isinstance(reason, str) else list(reason)
    if guesses is not None:
        g = guesses.reindex(frame.index)
        if "label" in g.columns:
            frame["model_guess"] = g["label"].astype(object).where(g["label"].notna(), None)
            frame["model_confidence"] = [None if pd.isna(v) else round(float(v), 4) for v in g["score"]]
        dims = [c for c in g.columns if c not in ("label", "score")]
        if dims and "label" not in g.columns:
            frame["model_guess"] = ["; ".join(f"{d} {row[d]:.2f}" for d in dims if pd.notna(row[d])) or None
                                    for _, row in g.iterrows()]
    name = strategy if strategy in SCORES or strategy in REGRESSION_SCORES else (
        uncertainty if strategy in _RANKS_BY_UNCERTAINTY else None)
    values = _uncertainty(scores, ids, name) if name and scores is not None else None
    if values is not None:
        # The reason quotes the very number in the score column (rounded once, to 4 places): rounding the raw
        # value to 3 places for the reason and to 4 for the column made the two disagree at rounding boundaries.
        shown = [None if np.isnan(v) else round(float(v), 4) for v in values]
        frame["score"] = shown
        frame["reason"] = [f"{why}: " + (f"top-2 gap {1 - s:.4f}" if name == "margin" else f"{name} {s:.4f}")
                           if s is not None else why for why, s in zip(frame["reason"], shown)]
    return frame


def _uncertainty(scores, ids: list[str], name: str) -> np.ndarray | None:
    """[len(ids)] the ``name`` uncertainty of each id under ``scores`` (NaN for an unscored id); None when the
    scores lack what it needs (MC samples, classes)."""
    pos = pd.Index(scores.ids.astype(str)).get_indexer(ids)
    out = np.full(len(ids), np.nan)
    keep = pos >= 0
    if name == "bald":
        source = scores.mc_probs
    elif name in REGRESSION_SCORES:
        source = scores.mc_dims
    else:
        source = scores.probs if scores.probs.shape[1] >= 2 else None
    if source is None or not keep.any():
        return None
    fn = REGRESSION_SCORES.get(name) or SCORES[name]
    out[keep] = fn(source[pos[keep]])
    return out


class LabelHandover:
    """Asks the run's oracle for labels and records its answers.

    Args:
        pool: the opened pool (the simulated oracle reads its training labels: it plays the annotator).
        out: the run folder.
        ledger: the run's label ledger.
        active: the loop's config (``oracle``, ``label_studio``).
        labels / dimensions / value_range: ``model.labels``, ``model.dimensions``, ``model.dimension_range``.
        clips: every clip of the training split with its seconds of audio (the ledger records them); a
            request's paths are read from the pool for its own clips.
        oracle: an oracle to use instead of the one ``active.oracle`` names.
        log: progress output.
        where: the rows of the training split the run labels (a cross-lingual run's target group; {} = all).
    """

    def __init__(self, pool, out: StoragePath, ledger: LabelLedger, active: ActiveConfig, labels: list[str],
                 dimensions: list[str], value_range: tuple[float, float], clips: TrainingClips, oracle=None,
                 log: Callable[[str], None] = print, where: dict | None = None):
        self.pool, self.out, self.ledger, self.active = pool, out, ledger, active
        self.labels, self.dimensions, self.value_range = labels, dimensions, value_range
        self.clips, self.where = clips, dict(where or {})
        self.override = oracle
        self.log = log
        self._unlabelable_ids: set[str] | None = None
        self._dropped_table: pd.DataFrame | None = None
        self._simulated: SimulatedOracle | None = None
        self._segments: pd.DataFrame | None = None  # the current request's segments, written for people
        self._path_range: list[str] | None = None

    def grow(self, clips: TrainingClips) -> None:
        """The pool grew (or was relabelled) during the run: the oracle may be asked about its new clips."""
        self.clips = clips
        self._unlabelable_ids = self._simulated = self._path_range = None  # rebuilt over the new clips on next use

    def clip_info(self, ids) -> pd.DataFrame:
        """``utt_id, path, duration`` of ``ids`` (training-split clips), read from the pool; a segment written
        for people (:func:`~ser_models.labelling.clips.segment_clips`) points at its clip, with its times and
        source in :data:`~ser_models.labelling.clips.CLIP_COLUMNS`."""
        ids = [str(i) for i in ids]
        if not ids:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (("utt_id", str), ("path", str),
                                                                    ("duration", float))})
        info = self.pool.metadata(columns=["utt_id", "path", "duration"], split="train", where={"utt_id": ids})
        if self._segments is None:
            return info
        info = info.set_index(info["utt_id"].astype(str))
        for col in CLIP_COLUMNS:
            info[col] = None
        info = info.astype({c: object for c in ("path", *CLIP_COLUMNS)})
        rows = self._segments.index.intersection(info.index)
        info.loc[rows, ["path", *CLIP_COLUMNS]] = self._segments.loc[rows, ["path", *CLIP_COLUMNS]].to_numpy(dtype=object)
        return info.reset_index(drop=True)

    def _paths_span(self) -> list[str]:
        """The first and last path of the training split in sort order: their common folder holds every clip
        (Label Studio's local storage covers the pool, not one request). Scanned once, not held."""
        if self._path_range is None:
            self._path_range = list(self.pool.value_range("path", split="train", where=self.where) or ())
        return self._path_range

    @property
    def dropped_path(self) -> StoragePath:
        return self.out / "labels" / "dropped.parquet"

    @property
    def simulated(self) -> bool:
        """The labels come from the pool's own truth (benchmarks), so the truth may be used for reports."""
        return self.override is None and self.active.oracle == "simulated"

    @property
    def takes_details(self) -> bool:
        """The oracle writes a file for people (``active.oracle=file``), which shows each clip's model guess, the
        strategy's score and why it was asked (:func:`request_details`)."""
        return self.override is None and self.active.oracle == "file"

    @property
    def shows_guesses(self) -> bool:
        """The oracle shows people the model's guess (Label Studio with ``pre_annotate``): only then are
        guesses worth computing."""
        return (self.override is None and self.active.oracle == "label_studio"
                and self.active.label_studio.pre_annotate)

    def run_label(self) -> str:
        """Names the run's default Label Studio project: the folder's name and a hash of its full path, so two
        runs whose folders share a name never share a project."""
        return f"{self.out.name} {hashlib.sha1(str(self.out).encode()).hexdigest()[:8]}"

    def folder(self, r: int, evaluation: bool = False) -> StoragePath:
        """Where the request of round ``r``'s picks lives (-1: the initial set; ``evaluation``: the evaluation
        sets, ``rounds/evaluation``)."""
        return self.out / "rounds" / ("evaluation" if evaluation else f"round={r:03d}" if r >= 0 else "initial")

    def oracle(self, r: int, evaluation: bool = False, ids=()):
        """The oracle that labels the clips picked after round ``r`` (-1: the initial set), or with ``evaluation``
        the evaluation sets; ``ids``: the clips it is asked about (a request shows their paths)."""
        if self.override is not None:
            return self.override
        folder = self.folder(r, evaluation)
        if self.active.oracle == "label_studio":
            spans = self._paths_span() if self.active.label_studio.audio == "local_files" else None
            return LabelStudioOracle(self.active.label_studio, self.labels, self.dimensions, self.value_range,
                                     self.clip_info(ids), folder, run_name=self.run_label(), log=self.log,
                                     purpose="evaluation" if evaluation else "train", pool_paths=spans)
        if self.active.oracle == "file":
            return FileOracle(folder, self.labels, self.clip_info(ids), dimensions=self.dimensions,
                              value_range=self.value_range,
                              request="the evaluation sets (test and dev)" if evaluation else request_name(r, evaluation))
        if self._simulated is None:
            # The only place that reads the pool's own training labels: it plays the human annotator.
            self._simulated = simulated_oracle(self.pool, self.labels, self.dimensions)
        return self._simulated

    def unlabelable(self) -> set[str]:
        """Training clips the oracle cannot label (simulated: no true label, or one outside model.labels) or
        dropped: never selected, so the run neither crashes at labelling time nor writes a foreign label."""
        if self._unlabelable_ids is None:
            check = getattr(self.oracle(-1), "unlabelable", None)
            cannot = set(check(self.clips.ids)) if check is not None else set()
            # Told apart: a clip people skipped is no fault of the oracle's, and the message says where it is.
            dropped = set(self.dropped()["utt_id"]) - cannot
            self._unlabelable_ids = cannot | dropped
            if cannot:
                self.log(f"  {len(cannot)} training clips cannot be labelled by the oracle (no true label, one "
                         "outside model.labels, or no value of a model.dimensions) and are never selected")
            if dropped:
                self.log(f"  {len(dropped)} clips skipped or dropped in labelling ({self.dropped_path}) are never "
                         "asked for again")
        return self._unlabelable_ids

    def label_picks(self, ids: list[str], r: int, scores, choice: dict | None = None) -> None:
        """Label the clips round ``r`` picked (stamped round ``r + 1`` in the ledger), with round ``r``'s model
        guesses for an oracle that shows them (and, for a request file, the strategy's score and the reason per
        clip; ``choice``: what ``auto`` chose)."""
        shown = self.shows_guesses or self.takes_details
        if shown and isinstance(scores, ScoreShards):  # the picks' rows only
            scores = scores.rows_of(ids)
        guesses = model_guesses(scores, ids, self.labels, self.dimensions) if shown else None
        name = choice["chosen"] if choice else self.active.strategy.name
        self.label(ids, r + 1, r, guesses=guesses, model_version=f"{self.run_label()} round {r}",
                   reason=name if name == self.active.strategy.name else f"auto chose {name}", scores=scores,
                   strategy=name)

    def label(self, ids: list[str], ledger_round: int, oracle_round: int, guesses: pd.DataFrame | None = None,
              model_version: str = "", purposes: Mapping[str, str] | None = None,
              reason: str | list[str] | None = None, scores=None, strategy: str | None = None) -> None:
        """Have ``ids`` labelled and append the answers to the ledger as ``ledger_round``.

        Args:
            guesses: the model's guess per clip (:func:`model_guesses`); an oracle that shows them to people
                (Label Studio's pre-annotations) sends them with the clips, the others ignore them.
            model_version: names the model that made ``guesses`` (the run and round).
            purposes: ``{utt_id: "test" | "dev"}``: the clips are the evaluation sets (their own request folder
                or project; their ledger rows carry the purpose). None = training picks.
            reason / scores / strategy: why the clips are asked, the round's scores and the strategy that picked
                them: an oracle that writes a file for people shows them with ``guesses``
                (:func:`request_details`); the others ignore them.

        Raises:
            LabellingPending: people are still annotating some of the clips (what is finished is kept).
        """
        ids = [str(i) for i in ids]
        evaluation = purposes is not None
        self._segment_clips(ids, oracle_round, evaluation)
        oracle = self.oracle(oracle_round, evaluation, ids)
        if hasattr(oracle, "collect"):  # people annotating on a server: finished clips go in as they finish
            self._collect(oracle, ids, ledger_round, guesses, model_version, purposes)
            return
        details = None
        if getattr(oracle, "takes_details", False) and reason is not None:
            details = request_details(ids, reason, guesses, scores, strategy, self.active.strategy.uncertainty)
        if isinstance(oracle, FileOracle):  # people fill a file: what they filled in goes in, the rest waits
            self._import_file(oracle, ids, ledger_round, oracle_round, details, purposes)
            return
        answer = oracle.label(list(ids), ledger_round, **({"details": details} if details is not None else {}))
        self._append(as_annotations(answer, ids, self.dimensions), ledger_round, oracle.name, purposes,
                     request_name(oracle_round, evaluation))

    def _segment_clips(self, ids: list[str], oracle_round: int, evaluation: bool = False) -> None:
        """People hear segments, not their recordings: write the clips of ``ids`` that are segments into the
        request's ``clips/`` folder; :meth:`clip_info` then points at them (with the segment's times and source)."""
        if self.override is not None or self.active.oracle not in ("file", "label_studio"):
            return
        folder = self.folder(oracle_round, evaluation) / "clips"
        self._segments = segment_clips(self.pool, ids, str(folder), self.active.clip_context)

    def _import_file(self, oracle: FileOracle, ids: list[str], ledger_round: int, oracle_round: int,
                     details: pd.DataFrame | None, purposes: Mapping[str, str] | None) -> None:
        """Write the request file, or import what people filled in so far: the rows filled in correctly go to
        the ledger, ``skip`` rows to the dropped list, and the job waits (LabellingPending) while rows are blank
        or refused. A decision is final: rows already imported or skipped are not read again."""
        oracle.ask(ids, oracle_round, details)
        decided = (self.ledger.ids(None) | set(self.dropped()["utt_id"])) & set(ids)
        got = oracle.read(ids, decided)
        said = request_name(oracle_round, purposes is not None)
        if len(got.frame):
            self._append(got.frame, ledger_round, oracle.name, purposes, said)
        if got.skipped:
            self.record_dropped(got.skipped, ledger_round, said)
        self.log(f"  {oracle.file}: {got.summary()}" + (f" ({len(decided)} imported or skipped before)"
                                                          if decided else ""))
        for problem in got.problems[:50]:
            self.log(f"    refused: {problem}")
        if got.pending:
            raise LabellingPending(oracle.pending_message(got, oracle_round))

    def _append(self, frame: pd.DataFrame, ledger_round: int, oracle: str,
                purposes: Mapping[str, str] | None = None, said: str | None = None) -> None:
        """Check an annotation frame (index utt_id) and append it to the ledger, with its ``annotator``,
        ``time`` and ``soft_label`` columns when it has them, and each clip's purpose (``purposes``; None =
        training labels); ``said`` names the request in messages."""
        check_annotations(frame, self.labels, self.dimensions, self.value_range, f"{oracle} oracle, " + (
            said or ("evaluation sets" if purposes is not None else f"round {ledger_round}")))
        frame = frame.copy()
        frame.index = frame.index.astype(str)
        of = pd.Series([("train" if purposes is None else purposes[i]) for i in frame.index], index=frame.index)
        for purpose in dict.fromkeys(of):  # one append per purpose, in first-seen order
            part = frame[(of == purpose).to_numpy()]
            ids = list(part.index)
            extra = {key: part[col].tolist() for key, col in (("annotators", "annotator"), ("times", "time"),
                                                               ("soft_labels", "soft_label")) if col in part.columns}
            self.ledger.append(ledger_round, ids, part["label"].tolist(), oracle=oracle,
                               dimensions={d: part[d].tolist() for d in self.dimensions},
                               seconds=self.clips.seconds_of(ids).tolist(), purpose=purpose, **extra)

    def _collect(self, oracle, ids: list[str], ledger_round: int, guesses: pd.DataFrame | None,
                 model_version: str, purposes: Mapping[str, str] | None = None) -> None:
        """Hand the oracle's finished clips to the ledger and its dropped ones to ``labels/dropped.parquet``;
        stop the job (LabellingPending) while any clip is still being annotated. A decision is final: clips
        already in the ledger or dropped are not read again (append-only; later edits in the tool are ignored)."""
        decided = (self.ledger.ids(None) | set(self.dropped()["utt_id"])) & set(ids)
        got = oracle.collect(ids, ledger_round, decided=decided, guesses=guesses, model_version=model_version)
        a = oracle.save(got)  # the round's agreement so far (every annotation read in this round)
        fresh = got.frame[~got.frame.index.isin(decided)]
        if len(fresh):
            self._append(fresh, ledger_round, oracle.name, purposes)
        if got.dropped:
            self.record_dropped(got.dropped, ledger_round)
        agreement = (f"; {a['multi_annotated']} clips with several annotators: majority share "
                     f"{a['majority_share']:.2f}, pairwise agreement {a['pairwise']:.2f}, Krippendorff alpha "
                     + ("n/a" if a["alpha"] is None else f"{a['alpha']:.2f}")) if a["multi_annotated"] else ""
        for dim, d in (a.get("dimensions") or {}).items():
            if d["alpha"] is not None:
                agreement += f"; {dim}: alpha {d['alpha']:.2f}, mean sd {d['mean_sd']:.2f}"
        what = "the evaluation sets" if purposes is not None else f"round {ledger_round}"
        self.log(f"  labels for {what}: {len(fresh)} new in the ledger, {len(decided)} decided before, "
                 f"{len(got.dropped)} dropped, {len(got.pending)} pending{agreement}")
        if got.pending:
            raise LabellingPending(oracle.pending_message(got, ledger_round))

    def dropped(self) -> pd.DataFrame:
        """Clips an oracle dropped (``utt_id, round, reason``): never labelled, never selected again. Read from
        ``labels/dropped.parquet`` once per run; :meth:`record_dropped` keeps the copy current."""
        if self._dropped_table is None:
            path = self.dropped_path
            self._dropped_table = read_parquet(path).to_pandas() if exists(path) else pd.DataFrame(
                {"utt_id": pd.Series(dtype=str), "round": pd.Series(dtype="int64"), "reason": pd.Series(dtype=str)})
        return self._dropped_table

    def record_dropped(self, dropped: dict[str, str], ledger_round: int, said: str | None = None) -> None:
        """Add ``{utt_id: reason}`` to the dropped list (a clip already labelled or dropped stays as it was);
        ``said`` names the request in the log line."""
        old = self.dropped()
        new = pd.DataFrame({"utt_id": list(dropped), "round": ledger_round, "reason": list(dropped.values())})
        new = new[~new["utt_id"].isin(set(old["utt_id"]) | self.ledger.ids(None))]
        if new.empty:
            return
        table = pd.concat([old, new], ignore_index=True)
        table = table.astype({"round": "int64"})
        write_parquet_atomic(self.dropped_path, pa.Table.from_pandas(table, preserve_index=False))
        self._dropped_table = table
        if self._unlabelable_ids is not None:
            self._unlabelable_ids |= set(new["utt_id"])
        self.log(f"  {len(new)} clips dropped from {said or f'round {ledger_round}'} (never asked again): "
                 + ", ".join(f"{u!r} ({why})" for u, why in list(dropped.items())[:5]))
