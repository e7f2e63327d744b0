"""The labelling package's config: ``active.label_studio``, where the Label Studio project lives and how several
annotators' votes become one label (:class:`~ser_models.labelling.label_studio_oracle.LabelStudioOracle` reads
it)."""

from __future__ import annotations

from dataclasses import dataclass

from ser_models.config import LOCATION, RESULT, SPEED, field
from ser_models.exceptions import ConfigError
from ser_models.labelling.label_studio_client import check_server_url

_AGGREGATE = ("majority", "soft")
_ON_DISAGREEMENT = ("requeue", "drop", "soft")
_AUDIO = ("upload", "local_files", "url")


@dataclass
class LabelStudioConfig:
    """``active.label_studio``: where the project lives and how several annotators' votes become one label."""

    url: str = field("", effect=LOCATION, help="Label Studio base URL, e.g. https://labelstudio.internal or "
                                               "http://127.0.0.1:8080 (plain http only to loopback, see "
                                               "allow_insecure_http); '' = the LABEL_STUDIO_URL environment "
                                               "variable")
    api_key_env: str = field("LABEL_STUDIO_API_KEY", effect=LOCATION, help="name of the environment variable holding the access "
                                                                           "token (never put the token in a config)")
    project: str = field("", effect=LOCATION, help="project title; '' = 'SER active learning: <output_dir name>'")
    annotators: int = field(1, effect=RESULT, help="annotations asked for per clip (the count, whatever the "
                                                   "server's project settings say)")
    aggregate: str = field("majority", effect=RESULT, help=f"{list(_AGGREGATE)}: one label per clip, or the label plus the "
                                                           "annotators' vote shares (soft label)")
    min_agreement: float = field(0.0, effect=RESULT, help="a clip whose plurality label has a smaller share of the votes is "
                                                          "disputed (a tie always is)")
    on_disagreement: str = field("requeue", effect=RESULT, help=f"{list(_ON_DISAGREEMENT)}: ask one more annotator, drop the "
                                                                "clip, or keep it with its soft label")
    max_annotations: int = field(0, effect=RESULT, help="requeue stops here and drops the clip; 0 = annotators + 2")
    audio: str = field("upload", effect=LOCATION, help=f"{list(_AUDIO)}: upload each clip's file to the server; serve it from a "
                                                       "folder the server reads (local_files_root); or pass the clip's path as "
                                                       "the URL (http(s), or s3:// with the bucket connected to the project)")
    local_files_root: str = field("", effect=LOCATION, help="audio=local_files: the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
                                                            " (every clip path lies under it; the project gets it as storage)")
    wait: bool = field(False, effect=SPEED, help="poll until the round's tasks are finished instead of stopping the job")
    poll_seconds: float = field(30.0, effect=SPEED, help="wait=true: seconds between polls")
    wait_timeout_s: float = field(24 * 3600.0, effect=SPEED, help="wait=true: give up waiting (the job stops as with "
                                                                  "wait=false; rerun it later)")
    timeout_s: float = field(60.0, effect=SPEED, help="seconds per HTTP request")
    allow_insecure_http: bool = field(False, effect=LOCATION, help="accept a plain http:// url of another machine "
                                                                  "(the access token then crosses the network in "
                                                                  "clear text); loopback (127.0.0.1, ::1, "
                                                                  "localhost) never needs it, else use https://")
    pre_annotate: bool = field(True, effect=RESULT, help="send the round's model guess with each task as a Label Studio "
                                                         "prediction (class and its probability, dimension values) and make it "
                                                         "the project's model_version, so annotators start from it; false = "
                                                         "bare clips (no anchoring on the model's guess)")

    def __post_init__(self):
        checks = [("aggregate", self.aggregate, _AGGREGATE), ("on_disagreement", self.on_disagreement,
                                                               _ON_DISAGREEMENT), ("audio", self.audio, _AUDIO)]
        for key, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"active.label_studio.{key} must be one of {list(allowed)}, got {value!r}")
        if "@" in self.url.split("://", 1)[-1].split("/", 1)[0]:
            raise ConfigError("active.label_studio.url holds a user name or password: credentials never go in a "
                              "config (config.yaml keeps it beside the run). Give the URL without them and the access "
                              f"token in the ${self.api_key_env} environment variable")
        if self.annotators < 1:
            raise ConfigError(f"active.label_studio.annotators must be >= 1, got {self.annotators}")
        if self.max_annotations and self.max_annotations < self.annotators:
            raise ConfigError(f"active.label_studio.max_annotations ({self.max_annotations}) is below annotators "
                              f"({self.annotators})")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ConfigError(f"active.label_studio.min_agreement must lie in [0, 1], got {self.min_agreement}")
        if self.poll_seconds <= 0 or self.wait_timeout_s < 0 or self.timeout_s <= 0:
            raise ConfigError("active.label_studio.poll_seconds and timeout_s must be > 0, wait_timeout_s >= 0")
        if self.url:  # refused when the config loads, not at the first round
            check_server_url(self.url, self.allow_insecure_http)
        if self.audio == "local_files" and not self.local_files_root:
            raise ConfigError("active.label_studio.audio=local_files needs local_files_root (the server's "
                              "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")

    @property
    def annotation_cap(self) -> int:
        return self.max_annotations or self.annotators + 2


__all__ = ["LabelStudioConfig"]
