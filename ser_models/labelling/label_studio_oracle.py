"""``LabelStudioOracle``: people label each round's clips in a Label Studio project.

Each round the oracle makes sure the run's project exists with the right labelling interface (an audio player,
the run's class names as single choices, one slider per ``model.dimensions``), creates the round's tasks that
are not there yet (audio uploaded to the server, served from a folder the server reads, or referenced by URL),
and reads the annotations back. The server is the state: a rerun, or a driver killed while it waited, finds
the tasks it made (``data.utt_id`` + ``data.ser_round``) and never creates them twice.

A task is finished when it holds as many annotations as ``annotators`` asks (skips included), plus one per
requeue; the count comes from the config, never from the server's project settings or a task's ``overlap``
(which the oracle sets back when someone changed them in the UI). Finished clips get one label from their
annotators' votes (:mod:`ser_models.labelling.agreement`):

* ``aggregate=majority``: the plurality label; ``aggregate=soft``: the plurality label plus the vote shares
  (``soft_label`` in the ledger; training on soft targets uses them).
* A clip is *disputed* when the top classes tie or the plurality share is below ``min_agreement``. Then
  ``on_disagreement`` decides: ``requeue`` asks the server for one more annotation of the task (up to
  ``max_annotations``, after which the clip is dropped), ``drop`` drops the clip, ``soft`` keeps it with its
  soft label.
* A dropped clip (disputed, or skipped by every annotator) never enters the ledger and is never selected again
  (the loop records it in ``labels/dropped.parquet``). It counts against the budget like a labelled clip:
  people spent time on it.
* Dimensional values (arousal / valence / dominance sliders) are averaged over the annotators.

Pre-annotations (``pre_annotate``, on by default): from round 1 on, each new task carries the model's guess as a
Label Studio *prediction* (the class choice with its probability as the score, slider values for dimensions),
stamped ``model_version`` = the run and round that made it, and the project's ``model_version`` is set to it
after the import, since Label Studio only shows predictions whose version matches the project's. Annotators
then confirm or correct a guess instead of starting blank: faster, but a guess can anchor a hesitant
annotator toward the model's answer, which would feed the model its own mistakes. Turn it off where labels
must be independent of the model (a test set, or an agreement study). The initial set has no model, so no
guess.

Finished clips are handed over as soon as they are finished; the others keep the round open
(:class:`~ser_models.exceptions.LabellingPending`), or the oracle polls until they finish (``wait``).
Annotations the model cannot train on (a choice outside ``model.labels``, a missing choice or slider, a value
out of range, one annotator twice on a task, two tasks for one clip) are refused with the task named, and
nothing is handed over until they are fixed in Label Studio.
"""

from __future__ import annotations

import json
import math
import mimetypes
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd
import pyarrow as pa

from ser_models import io
from ser_models.exceptions import ConfigError, LabelImportError, LabellingPending, OracleError
from ser_models.labelling.agreement import agreement_report, dimension_agreement, tally
from ser_models.labelling.clips import CLIP_COLUMNS
from ser_models.labelling.config import LabelStudioConfig
from ser_models.labelling.label_studio_client import LabelStudioClient
from ser_models.names import safe_file_name

__all__ = ["Collected", "LabelStudioOracle", "label_config_xml"]

#: The labelling interface's control names (the oracle reads results by them).
AUDIO_NAME, CHOICES_NAME = "audio", "emotion"
#: A skip counts as one of a task's annotations, for the server's queue as for the oracle (its default,
#: REQUEUE_FOR_OTHERS, keeps serving a skipped task while the oracle would count it finished).
_SKIP_QUEUE = "IGNORE_SKIPPED"
#: Task data key recording how many annotations the oracle asked for after a requeue (the server's own
#: ``overlap`` follows project settings anyone may edit, so it is never the count).
_ASKED = "ser_annotations"


def label_config_xml(labels: Sequence[str], dimensions: Sequence[str], value_range: tuple[float, float]) -> str:
    """The project's labelling interface: audio player, one single choice among ``labels``, one slider per
    dimension over ``value_range``."""
    parts = [f'<View><Header value="Listen to the clip, then label it"/>'
             f'<Audio name="{AUDIO_NAME}" value="${AUDIO_NAME}" hotkey="space"/>']
    if labels:
        choices = "".join(f"<Choice value={quoteattr(str(c))}/>" for c in labels)
        parts.append(f'<Header value="Emotion"/><Choices name="{CHOICES_NAME}" toName="{AUDIO_NAME}" '
                     f'choice="single-radio" required="true" showInline="true">{choices}</Choices>')
    low, high = value_range
    for dim in dimensions:
        parts.append(f'<Header value={quoteattr(dim.capitalize())}/><Number name={quoteattr(dim)} '
                     f'toName="{AUDIO_NAME}" min="{low:g}" max="{high:g}" step="0.1" slider="true" required="true"/>')
    return "".join(parts) + "</View>"


@dataclass
class Collected:
    """What a round's tasks hold right now.

    Attributes:
        frame: finished, agreed clips: index ``utt_id``; ``label``, one column per dimension, ``annotator``
            (comma-separated emails), ``time`` (UTC, the last annotation's), ``soft_label`` (JSON vote shares or
            None).
        dropped: ``{utt_id: reason}`` of clips that will never get a label this round.
        pending: clips whose tasks are not finished (or were requeued).
        annotations: one row per annotation of the finished tasks (utt_id, task, annotation, annotator, time,
            label, dimensions, lead_time seconds).
        agreement: :func:`~ser_models.labelling.agreement.agreement_report` over the finished clips' votes, plus
            ``dimensions``: ``{dim: dimension_agreement(...)}`` over their slider values.
        url: where the annotators work.
    """

    frame: pd.DataFrame
    dropped: dict[str, str]
    pending: list[str]
    annotations: pd.DataFrame
    agreement: dict
    url: str


class LabelStudioOracle:
    """Labels from people annotating in Label Studio.

    Args:
        cfg: ``active.label_studio``.
        labels: ``model.labels`` ([] = no class choice, dimensions only).
        dimensions: ``model.dimensions`` (one slider each).
        value_range: ``model.dimension_range``.
        clip_info: DataFrame with ``utt_id, path, duration`` of every clip that may be asked.
        round_dir: the round's folder: ``label_studio/annotations.parquet`` and ``agreement.json`` go there.
        run_name: names the default project.
        client: a :class:`LabelStudioClient` (None = built from ``cfg`` and the environment).
        log: progress output.
        sleep: what waiting calls (tests pass a fake clock).
        purpose: ``"train"`` (the rounds' clips) or ``"evaluation"`` (the test and dev sets drawn before round
            0): evaluation clips go to a project of their own, titled ``<project> (evaluation)``, whose tasks
            carry ``data.ser_purpose`` and never a model guess, so annotators label them blind and the rounds'
            queue never mixes with them.
        pool_paths: paths whose common folder, with ``clip_info``'s, is served as local storage
            (``audio=local_files``): the first and last of the pool's, so that one storage covers every round.
            None = ``clip_info``'s alone.
    """

    name = "label_studio"

    def __init__(self, cfg: LabelStudioConfig, labels: Sequence[str], dimensions: Sequence[str],
                 value_range: tuple[float, float], clip_info: pd.DataFrame, round_dir, run_name: str,
                 client: LabelStudioClient | None = None, log: Callable[[str], None] = print,
                 sleep: Callable[[float], None] = time.sleep, purpose: str = "train",
                 pool_paths: Sequence[str] | None = None):
        if not labels and not dimensions:
            raise OracleError("LabelStudioOracle needs model.labels or model.dimensions")
        if purpose not in ("train", "evaluation"):
            raise OracleError(f"LabelStudioOracle purpose must be 'train' or 'evaluation', got {purpose!r}")
        self.purpose = purpose
        self.cfg = cfg
        self.labels = [str(x) for x in labels]
        self.dimensions = list(dimensions)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self._info = clip_info.set_index(clip_info["utt_id"].astype(str))
        self._pool_paths = list(pool_paths or ())
        self.round_dir = str(round_dir).rstrip("/")
        self.title = (cfg.project or f"SER active learning: {run_name}") + (
            " (evaluation)" if purpose == "evaluation" else "")
        self._client = client
        self.log = log
        self.sleep = sleep
        self._project: dict | None = None
        self._users: dict[int, str] | None = None

    # ----------------------------------------------------------------------------------------- plumbing
    @property
    def client(self) -> LabelStudioClient:
        if self._client is None:
            url = self.cfg.url or os.environ.get("LABEL_STUDIO_URL", "")
            token = os.environ.get(self.cfg.api_key_env, "")
            if not url:
                raise ConfigError("active.oracle=label_studio needs the server: set active.label_studio.url or the "
                                  "LABEL_STUDIO_URL environment variable")
            if not token:
                raise ConfigError(f"active.oracle=label_studio needs an access token in the environment variable "
                                  f"{self.cfg.api_key_env} (Label Studio: Account & Settings -> Access Token; "
                                  "active.label_studio.api_key_env names another variable)")
            self._client = LabelStudioClient(url, token, timeout=self.cfg.timeout_s,
                                             allow_insecure_http=self.cfg.allow_insecure_http,
                                             key="active.label_studio.url" if self.cfg.url else "LABEL_STUDIO_URL")
        return self._client

    def project(self) -> dict:
        """The run's project, created or brought up to date with this run's interface."""
        if self._project is not None:
            return self._project
        xml = label_config_xml(self.labels, self.dimensions, self.value_range)
        found = self.client.find_project(self.title)
        if found is None:
            found = self.client.create_project(
                title=self.title, label_config=xml, maximum_annotations=self.cfg.annotators,
                show_skip_button=True, skip_queue=_SKIP_QUEUE,
                description="Test and dev clips drawn from the pool (ser_models): they measure the model and never "
                            "train it; label them as carefully as any." if self.purpose == "evaluation" else
                            "Clips picked by active learning (ser_models); one task per clip, tagged with its round "
                            "(data.ser_round).")
            self.log(f"  Label Studio: created project {found['id']} {self.title!r} at {self.client.url}")
        elif (found.get("label_config") != xml or found.get("maximum_annotations") != self.cfg.annotators
              or found.get("skip_queue") != _SKIP_QUEUE):
            found = self.client.update_project(found["id"], label_config=xml, skip_queue=_SKIP_QUEUE,
                                               maximum_annotations=self.cfg.annotators)
        if self.cfg.audio == "local_files":
            folder = self._clip_folder()
            if not any(s.get("path", "").rstrip("/") == folder for s in self.client.local_storages(found["id"])):
                self.client.add_local_storage(found["id"], folder, f"ser_models clips under {folder}")
        self._project = found
        return found

    def _clip_folder(self) -> str:
        """audio=local_files: the folder holding every clip (connected to the project as local storage; Label
        Studio wants a subfolder of its document root, not the root itself)."""
        root = os.path.abspath(self.cfg.local_files_root)
        paths = [*self._pool_paths, *self._info["path"]]
        folder = os.path.commonpath([os.path.abspath(str(p)) for p in paths] or [root])
        if not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        if os.path.commonpath([root, folder]) != root or folder == root:
            raise OracleError(f"audio=local_files: the clips lie under {folder}, which must be a subfolder of "
                              f"active.label_studio.local_files_root={root} (the server's "
                              "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, which Label Studio refuses as storage "
                              "itself); or use audio=upload")
        return folder

    @property
    def project_url(self) -> str:
        return f"{self.client.url}/projects/{self.project()['id']}/data"

    def _audio_value(self, project: int, uid: str) -> str:
        path = str(self._info.at[uid, "path"])
        if self.cfg.audio == "url":
            return path
        if self.cfg.audio == "local_files":
            root = os.path.abspath(self.cfg.local_files_root)
            return f"/data/local-files/?d={quote(os.path.relpath(os.path.abspath(path), root))}"
        suffix = os.path.splitext(path)[1]
        # the upload is named like the platform's own clip files: distinct ids never share a name
        name = safe_file_name(uid, suffix if re.fullmatch(r"\.[A-Za-z0-9_-]+", suffix) else ".wav")
        try:
            data = io.read_bytes(path)
        except Exception as exc:
            raise OracleError(f"cannot read clip {uid!r} at {path} for upload to Label Studio: {exc}") from exc
        return self.client.upload_file(project, name, data, mimetypes.guess_type(name)[0] or "audio/wav")

    def _round_tasks(self, project: int, ids: list[str], round: int) -> dict[str, dict]:  # noqa: A002
        """``{utt_id: task}`` of this round, refusing stray or duplicated tasks."""
        wanted = set(ids)
        mine: dict[str, list[dict]] = {}
        for task in self.client.tasks(project):
            data = task.get("data") or {}
            if str(data.get("ser_round")) == str(round):
                mine.setdefault(str(data.get("utt_id")), []).append(task)
        problems = [f"task {t['id']}: clip {uid!r} was not selected in round {round}"
                    for uid, ts in mine.items() if uid not in wanted for t in ts]
        problems += [f"tasks {', '.join(str(t['id']) for t in ts)}: clip {uid!r} has {len(ts)} tasks in round "
                     f"{round} (delete all but one)" for uid, ts in mine.items() if uid in wanted and len(ts) > 1]
        if problems:
            raise LabelImportError(f"Label Studio project {project} ({self.title!r}): " + "; ".join(problems[:20]))
        return {uid: ts[0] for uid, ts in mine.items()}

    def _create_tasks(self, project: int, ids: list[str], round: int,  # noqa: A002
                      guesses: pd.DataFrame | None = None, model_version: str = "") -> None:
        unknown = [i for i in ids if i not in self._info.index]
        if unknown:
            raise OracleError(f"LabelStudioOracle has no path/duration for clips {unknown[:10]}")
        if not self.cfg.pre_annotate or self.purpose == "evaluation":
            guesses = None
        chunk, predicted = 100, 0
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            tasks = []
            for uid in part:
                tag = {"ser_purpose": "evaluation"} if self.purpose == "evaluation" else {}
                task = {"data": {AUDIO_NAME: self._audio_value(project, uid), "utt_id": uid, "ser_round": int(round),
                                 **tag,
                                 "path": str(self._info.at[uid, "path"]),
                                 "duration": float(self._info.at[uid, "duration"]), **self._segment_fields(uid)}}
                prediction = self._prediction(guesses, uid, model_version)
                if prediction is not None:
                    task["predictions"] = [prediction]
                    predicted += 1
                tasks.append(task)
            self.client.import_tasks(project, tasks)
            self.log(f"  Label Studio: created {start + len(part)}/{len(ids)} tasks of {self._what(round)}")
        if predicted:
            # Label Studio shows a task's prediction only while its version is the project's: set it after
            # the import, so annotators see this round's guesses (older rounds' tasks are finished or dropped).
            self._project = self.client.update_project(project, model_version=model_version)
            self.log(f"  Label Studio: {predicted} tasks pre-annotated with the model's guess ({model_version!r})")

    def _segment_fields(self, uid: str) -> dict:
        """A segment's place in its recording (source file, channel, times), shown beside its own clip."""
        out = {}
        for col in CLIP_COLUMNS:
            value = self._info.at[uid, col] if col in self._info.columns else None
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                out[col] = value.item() if hasattr(value, "item") else value
        return out

    def _prediction(self, guesses: pd.DataFrame | None, uid: str, model_version: str) -> dict | None:
        """One clip's model guess as a Label Studio prediction (None without one)."""
        if guesses is None or uid not in guesses.index:
            return None
        row = guesses.loc[uid]
        result = []
        if self.labels and "label" in guesses.columns:
            result.append({"from_name": CHOICES_NAME, "to_name": AUDIO_NAME, "type": "choices",
                           "value": {"choices": [str(row["label"])]}})
        low, high = self.value_range
        for dim in self.dimensions:
            if dim in guesses.columns and np.isfinite(row[dim]):
                value = round(min(max(float(row[dim]), low), high), 1)  # the slider's range and step
                result.append({"from_name": dim, "to_name": AUDIO_NAME, "type": "number", "value": {"number": value}})
        if not result:
            return None
        score = float(row["score"]) if "score" in guesses.columns else None
        return {"model_version": model_version, "result": result, **({"score": score} if score is not None else {})}

    # -------------------------------------------------------------------------------------- annotations
    def _user(self, uid) -> str:
        if isinstance(uid, dict):  # some endpoints expand the user
            return str(uid.get("email") or uid.get("username") or uid.get("id"))
        if self._users is None or (uid is not None and int(uid) not in self._users):
            self._users = self.client.users()
        return "unknown" if uid is None else self._users.get(int(uid), str(uid))

    def _parse(self, task: dict, uid: str, ann: dict, problems: list[str]) -> dict | None:
        """One annotation as ``{annotator, time, label, <dims>, lead_time}``; problems go to ``problems``."""
        who = self._user(ann.get("completed_by"))
        where = f"task {task['id']} (clip {uid!r}, annotation {ann.get('id')} by {who})"
        results = {r.get("from_name"): r for r in ann.get("result") or []}
        row: dict = {"annotator": who, "time": pd.Timestamp(ann.get("updated_at") or ann.get("created_at")),
                     "label": None, "lead_time": ann.get("lead_time"), "annotation": ann.get("id")}
        ok = True
        if self.labels:
            choices = ((results.get(CHOICES_NAME) or {}).get("value") or {}).get("choices") or []
            if not choices:
                problems.append(f"{where}: no emotion chosen")
                ok = False
            elif len(choices) > 1:
                problems.append(f"{where}: {len(choices)} emotions chosen {choices} (one only)")
                ok = False
            elif str(choices[0]) not in self.labels:
                problems.append(f"{where}: unknown choice {choices[0]!r} (allowed: {', '.join(self.labels)})")
                ok = False
            else:
                row["label"] = str(choices[0])
        low, high = self.value_range
        for dim in self.dimensions:
            value = ((results.get(dim) or {}).get("value") or {}).get("number")
            try:
                value = float(value)
            except (TypeError, ValueError):
                problems.append(f"{where}: no {dim} value" if value is None else f"{where}: {dim} {value!r} is not a number")
                ok = False
                continue
            if not np.isfinite(value) or not low <= value <= high:
                problems.append(f"{where}: {dim} {value:g} outside [{low:g}, {high:g}] (model.dimension_range)")
                ok = False
            row[dim] = value
        return row if ok else None

    def collect(self, ids: Sequence[str], round: int, decided: frozenset[str] | set[str] = frozenset(),  # noqa: A002
                guesses: pd.DataFrame | None = None, model_version: str = "") -> Collected:
        """Make sure the round's tasks exist, then read them once (or until finished with ``wait``).

        Args:
            ids: the round's clips.
            round: the ledger round.
            decided: clips among ``ids`` already handed over or dropped: their tasks exist but are not read
                again (a decision is final; a later edit in Label Studio does not reopen it).
            guesses: the model's guess per clip (index ``utt_id``; ``label`` and ``score``, and/or one column
                per dimension): new tasks carry it as a prediction unless ``pre_annotate`` is off.
            model_version: names the model that guessed (the run and round).

        Raises:
            LabelImportError: naming every task whose annotations cannot be used; nothing is handed over.
        """
        ids = [str(i) for i in ids]
        project = self.project()["id"]
        tasks = self._round_tasks(project, ids, round)
        missing = [i for i in ids if i not in tasks]
        if missing:
            self.log(f"  Label Studio: {self._what(round)} needs {len(missing)} new tasks in project {project} "
                     f"({self.cfg.audio} audio)")
            self._create_tasks(project, missing, round, guesses, model_version)
            tasks = self._round_tasks(project, ids, round)
        deadline = time.monotonic() + self.cfg.wait_timeout_s
        open_ids = [i for i in ids if i not in decided]
        while True:
            got = self._read(tasks, open_ids, round)
            if not got.pending or not self.cfg.wait or time.monotonic() >= deadline:
                return got
            self.log(f"  Label Studio: {self._what(round)}: {len(ids) - len(got.pending)}/{len(ids)} clips decided, waiting "
                     f"for {len(got.pending)} (next check in {self.cfg.poll_seconds:g} s; {self.project_url})")
            self.sleep(self.cfg.poll_seconds)
            tasks = self._round_tasks(project, ids, round)

    def _read(self, tasks: dict[str, dict], ids: list[str], round: int) -> Collected:  # noqa: A002
        problems: list[str] = []
        rows, dropped, pending, raw = {}, {}, [], []
        cap = self.cfg.annotation_cap
        realigned = []
        for uid in ids:
            task = tasks[uid]
            anns = task.get("annotations") or []
            done = [a for a in anns if not a.get("was_cancelled")]
            need = self._asked(task)
            if int(task.get("overlap") or 0) != need:
                # The server's overlap follows its project settings, which anyone may change in its UI; the
                # count is ours. Setting it back also keeps the server's queue serving the task while it is short.
                self.client.set_task_overlap(int(task["id"]), need, is_labeled=len(anns) >= need)
                realigned.append(f"{task['id']} ({task.get('overlap')} -> {need})")
            if len(anns) < need:
                pending.append(uid)
                continue
            who = [a.get("completed_by") for a in done]
            twice = sorted({self._user(w) for w in who if who.count(w) > 1})
            if twice:
                problems.append(f"task {task['id']} (clip {uid!r}): annotated more than once by {', '.join(twice)}")
                continue
            parsed = [self._parse(task, uid, a, problems) for a in done]
            if any(p is None for p in parsed):
                continue
            if not parsed:
                dropped[uid] = f"skipped by every annotator ({len(anns)})"
                continue
            for p in parsed:
                raw.append({"utt_id": uid, "task": int(task["id"]), **p})
            record = {"annotator": ",".join(sorted({p["annotator"] for p in parsed})),
                      "time": max(p["time"] for p in parsed), "soft_label": None, "label": None}
            for dim in self.dimensions:
                record[dim] = float(np.mean([p[dim] for p in parsed]))
            if self.labels:
                vote = tally([p["label"] for p in parsed], self.labels)
                disputed = vote.tied or vote.share < self.cfg.min_agreement
                shown = ", ".join(f"{c} {s:.0%}" for c, s in vote.soft.items())
                if disputed and self.cfg.on_disagreement == "requeue" and need < cap:
                    self.client.set_task_overlap(int(task["id"]), need + 1,
                                                 data={**(task.get("data") or {}), _ASKED: need + 1})
                    self.log(f"  Label Studio: clip {uid!r} (task {task['id']}) disputed ({shown}): asking for "
                             f"annotation {need + 1} of at most {cap}")
                    pending.append(uid)
                    continue
                if disputed and self.cfg.on_disagreement != "soft":
                    dropped[uid] = f"annotators disagree ({shown}) after {len(parsed)} annotations"
                    continue
                record["label"] = vote.label
                if self.cfg.aggregate == "soft" or disputed:
                    record["soft_label"] = json.dumps(vote.soft)
            rows[uid] = record
        if realigned:
            self.log(f"  Label Studio: {len(realigned)} tasks asked for another number of annotations than "
                     f"active.label_studio sets; set back: {', '.join(realigned[:10])}")
        if problems:
            raise LabelImportError(f"Label Studio project {self.project()['id']} ({self.title!r}), round {round}: "
                                   f"{len(problems)} annotations cannot be used -- fix them in Label Studio, then "
                                   "rerun:\n  " + "\n  ".join(problems[:50]))
        columns = ["label", *self.dimensions, "annotator", "time", "soft_label"]
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
        annotations = pd.DataFrame(raw, columns=["utt_id", "task", "annotation", "annotator", "time", "label",
                                                 *self.dimensions, "lead_time"])
        return Collected(frame=frame.loc[[i for i in ids if i in rows]], dropped=dropped, pending=pending,
                         annotations=annotations, url=self.project_url, agreement=self._agreement(annotations))

    def _asked(self, task: dict) -> int:
        """Annotations this task needs: ``annotators``, or more where the oracle requeued it (recorded in the
        task's ``data.ser_annotations``, capped at ``max_annotations``); never the server's own overlap."""
        try:
            requeued = int((task.get("data") or {}).get(_ASKED) or 0)
        except (TypeError, ValueError):
            requeued = 0
        return min(max(self.cfg.annotators, requeued), self.cfg.annotation_cap)

    def _what(self, round: int) -> str:  # noqa: A002
        return "the evaluation sets" if self.purpose == "evaluation" else f"round {round}"

    def pending_message(self, got: Collected, round: int) -> str:  # noqa: A002
        return (f"{self._what(round)}: {len(got.pending)} clips still need annotations in Label Studio project "
                f"{self.title!r} ({got.url})"
                + (f"; {len(got.dropped)} were dropped" if got.dropped else "")
                + ". Annotate them, then rerun the same command (or set active.label_studio.wait=true to poll).")

    def save(self, got: Collected) -> dict:
        """Merge this read's annotations into the round's ``label_studio/annotations.parquet`` (one row per
        annotation, by annotation id: earlier reads' rows are kept) and write ``agreement.json`` over all of
        them; returns that agreement."""
        folder = f"{self.round_dir}/label_studio"
        path = f"{folder}/annotations.parquet"
        table = got.annotations.copy()
        table["time"] = pd.to_datetime(table["time"], utc=True)
        if io.exists(path):
            old = io.read_parquet(path).to_pandas()
            old = old[~old["annotation"].isin(set(table["annotation"]))]
            table = pd.concat([old, table], ignore_index=True) if len(table) else old
        io.write_parquet_atomic(path, _to_arrow(table))
        agreement = self._agreement(table)
        io.write_json_atomic(f"{folder}/agreement.json", {**agreement, "dropped_in_this_read": got.dropped,
                                                          "pending": len(got.pending), "project": self.title})
        return agreement

    def _agreement(self, annotations: pd.DataFrame) -> dict:
        """:func:`agreement_report` over the annotations' votes per clip, plus ``dimensions``:
        ``{dim: dimension_agreement(...)}`` over their slider values (one row per annotation in, as
        :attr:`Collected.annotations`)."""
        groups = [g for _, g in annotations.groupby("utt_id", sort=True)]
        votes = [g["label"].dropna().tolist() for g in groups] if self.labels else []
        return {**agreement_report([v for v in votes if v]),
                "dimensions": {d: dimension_agreement([g[d].dropna().tolist() for g in groups])
                               for d in self.dimensions}}

    def label(self, ids: list[str], round: int) -> pd.DataFrame:  # noqa: A002
        """The :class:`~ser_models.labelling.oracles.Oracle` protocol: every id's annotations, or
        :class:`LabellingPending` while some are not finished (the loop itself uses :meth:`collect`, which
        also hands over dropped clips and finished ones early)."""
        got = self.collect(ids, round)
        if got.pending:
            raise LabellingPending(self.pending_message(got, round))
        if got.dropped:
            raise OracleError(f"round {round}: Label Studio dropped {len(got.dropped)} clips: "
                              + ", ".join(f"{k!r} ({v})" for k, v in list(got.dropped.items())[:10]))
        return got.frame

    def __repr__(self) -> str:
        return f"LabelStudioOracle(project={self.title!r}, annotators={self.cfg.annotators})"


def _to_arrow(df: pd.DataFrame):

    return pa.Table.from_pandas(df, preserve_index=False)
