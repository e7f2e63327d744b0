"""A real Label Studio server for tests and local trials: started on 127.0.0.1 with SQLite in a folder, plus the
calls an annotator makes (sign up through the invite link, annotate, skip).

The server comes from the ``label-studio`` package in its own environment (``make labelstudio`` creates
``.venv-labelstudio``; its pins clash with ours). Every server starts from a copy of a migrated database made
once per installation (:func:`migrated_template`). Nothing here is used by the platform itself.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ser_models import ownership
from ser_models.labelling.label_studio_client import LabelStudioClient
from ser_models.testing import free_port

__all__ = ["LabelStudioServer", "find_label_studio", "start_label_studio"]

REPO = Path(__file__).resolve().parents[2]


def find_label_studio() -> str | None:
    """The ``label-studio`` executable: ``$SER_LABEL_STUDIO``, ``.venv-labelstudio`` of this checkout, or PATH."""
    for candidate in (os.environ.get("SER_LABEL_STUDIO"), REPO / ".venv-labelstudio" / "bin" / "label-studio",
                      shutil.which("label-studio")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@dataclass
class LabelStudioServer:
    """A running server: ``url``, the admin's ``token`` (legacy token auth) and helpers acting as annotators."""

    url: str
    token: str
    data_dir: Path
    process: subprocess.Popen
    log_file: Path
    annotators: dict[str, str] = field(default_factory=dict)  # email -> token

    def admin(self):
        import requests

        s = requests.Session()
        s.headers["Authorization"] = f"Token {self.token}"
        return s

    def signup(self, email: str, password: str = "annotator-pw-1") -> str:
        """Sign ``email`` up through the organisation's invite link (as a person would in the browser) and
        return the new user's API token."""
        import requests

        if email in self.annotators:
            return self.annotators[email]
        invite = self.admin().get(f"{self.url}/api/invite", timeout=30).json()["invite_url"]
        s = requests.Session()
        page = f"{self.url}{invite}"
        s.get(page, timeout=30).raise_for_status()
        r = s.post(page, data={"email": email, "password": password, "allow_newsletters": "false",
                               "csrfmiddlewaretoken": s.cookies.get("csrftoken")},
                   headers={"Referer": page}, timeout=30)
        r.raise_for_status()
        token = s.get(f"{self.url}/api/current-user/token", timeout=30).json()["token"]
        self.annotators[email] = token
        return token

    def annotate(self, email: str, task: int, choice: str | None = None, numbers: dict | None = None,
                 skip: bool = False, lead_time: float = 3.0) -> dict:
        """POST one annotation of ``task`` as annotator ``email`` (a choice, slider values, or a skip)."""
        import requests

        result = []
        if choice is not None:
            result.append({"from_name": "emotion", "to_name": "audio", "type": "choices",
                           "value": {"choices": [choice]}})
        for name, value in (numbers or {}).items():
            result.append({"from_name": name, "to_name": "audio", "type": "number", "value": {"number": value}})
        body = {"result": [] if skip else result, "was_cancelled": bool(skip), "lead_time": lead_time}
        r = requests.post(f"{self.url}/api/tasks/{task}/annotations/", json=body, timeout=30,
                          headers={"Authorization": f"Token {self.signup(email)}"})
        r.raise_for_status()
        return r.json()

    def next_task(self, email: str, project: int) -> dict | None:
        """The task the annotator's queue serves next in ``project`` (what the browser's "Label" button opens),
        or None when the queue is empty."""
        import requests

        r = requests.get(f"{self.url}/api/projects/{project}/next", timeout=30,
                         headers={"Authorization": f"Token {self.signup(email)}"})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def tasks(self, title: str) -> list[dict]:
        """Every task (with annotations) of the project titled ``title``, read as the admin."""

        client = LabelStudioClient(self.url, self.token)
        project = client.find_project(title)
        assert project is not None, f"no project {title!r}"
        return list(client.tasks(project["id"]))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


#: The files of a started server's data folder that a new server may start from (the migrated database and the
#: secret key it was written with).
_TEMPLATE_FILES = ("label_studio.sqlite3", ".env")


def template_folder(executable: str) -> Path:
    """Where the migrated database of ``executable``'s installation is kept: inside its environment, so that a
    new install (another pin) gets a new one; for an installation this user cannot write (a system package), in
    the user's cache under a name made from the executable's path."""
    env = Path(executable).absolute().parent.parent
    if os.access(env, os.W_OK):
        return env / "ser-models-template"

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "ser-models")
    return base / f"label-studio-template-{hashlib.sha256(str(env).encode()).hexdigest()[:12]}"


def migrated_template(executable: str, timeout: float = 240.0) -> Path:
    """A data folder of ``executable`` whose database is migrated and has its admin, made once per installation.

    A first start of Label Studio applies some 300 database migrations (about 45 s on two cores); a server
    started from a copy of this folder answers in about 6 s. The admin's token is in ``token`` beside the
    database, since the server keeps an existing user's token. Made under a lock, so concurrent test workers
    build it once.

    Returns:
        The folder (``label_studio.sqlite3``, ``.env``, ``token``).
    """
    import fcntl

    folder = template_folder(executable)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".ser-models-template.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if (folder / "token").is_file():
            return folder
        if folder.exists():
            raise RuntimeError(f"{folder} exists but holds no template (no token): remove it by hand")
        # The server's first start runs in a staging folder of the ownership module, which alone removes it;
        # only the template's files reach a new folder beside the target, renamed into place whole.
        build = Path(ownership.make_staging("label-studio-template"))
        try:
            server = _start(build, executable, None, timeout, secrets.token_hex(20))
            server.stop()
            part = Path(tempfile.mkdtemp(prefix=folder.name + ".partial-", dir=folder.parent))
            for name in _TEMPLATE_FILES:
                if (build / name).is_file():
                    shutil.copy2(build / name, part / name)
            (part / "token").write_text(server.token)
            os.replace(part, folder)  # whole or absent: a killed build leaves a .partial-* folder, never a half one
        finally:
            ownership.discard_staging(build)
    return folder


def start_label_studio(data_dir: str | Path, executable: str, document_root: str | Path | None = None,
                       timeout: float = 240.0) -> LabelStudioServer:
    """Start ``label-studio`` on a free port of 127.0.0.1 with a SQLite database under ``data_dir``, copied from
    the installation's :func:`migrated_template` (made on first use).

    Args:
        data_dir: the server's data folder (database, uploads, log); it must not hold a database yet.
        executable: the ``label-studio`` command (:func:`find_label_studio`).
        document_root: a folder the server may serve clips from (``/data/local-files/?d=``); None = off.
        timeout: seconds to wait for ``/health``.

    Raises:
        RuntimeError: the server exited or did not answer in time (with the end of its log).
    """
    template = migrated_template(executable, timeout)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if (data_dir / _TEMPLATE_FILES[0]).exists():
        raise RuntimeError(f"{data_dir} already holds a Label Studio database: start from an empty folder")
    for name in _TEMPLATE_FILES:
        if (template / name).is_file():
            shutil.copy2(template / name, data_dir / name)
    return _start(data_dir, executable, document_root, timeout, (template / "token").read_text().strip())


def _start(data_dir: Path, executable: str, document_root: str | Path | None, timeout: float,
           token: str) -> LabelStudioServer:
    import requests

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "DJANGO_DB": "sqlite",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    if document_root is not None:
        env.update(LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
                   LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root))
    log_file = data_dir / "server.log"
    cmd = [executable, "start", "--no-browser", "--data-dir", str(data_dir), "--internal-host", "127.0.0.1",
           "-p", str(port), "--username", "admin@example.com", "--password", secrets.token_hex(8),
           "--user-token", token, "--enable-legacy-api-token", "--log-level", "WARNING"]
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=data_dir)
    url = f"http://127.0.0.1:{port}"
    server = LabelStudioServer(url=url, token=token, data_dir=data_dir, process=proc, log_file=log_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"label-studio exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(1.0)
    server.stop()
    raise RuntimeError(f"label-studio did not answer on {url} within {timeout:.0f} s:\n"
                       f"{log_file.read_text()[-3000:]}")
