"""A small HTTP client for the Label Studio REST API (the calls the labelling oracle needs, nothing else).

Plain ``requests`` against the documented endpoints, so the platform does not pin the server's own SDK (the
``label-studio`` package pins numpy, pyarrow and Django versions of its own; it lives in its own environment).

Authentication: a personal access token (a JWT refresh token, Label Studio >= 1.17) is exchanged for a
short-lived access token (``Authorization: Bearer``) and refreshed on a 401; a legacy token is sent as
``Authorization: Token``. The token is read by the caller from an environment variable and never appears in a
message, a log line or a repr: every error text passes through :meth:`LabelStudioClient.redact`, which also
hides the access token, whatever a server or a network library puts in its messages.

Plain ``http://`` sends the token in clear text, so it is refused unless the server is on this machine
(``127.0.0.1`` and the rest of 127.0.0.0/8, ``::1``, ``localhost``) or the caller allows it
(``allow_insecure_http``, the config key ``active.label_studio.allow_insecure_http``). A URL holding a user name
or password (``https://user:pass@host``) is refused, from the config and from ``LABEL_STUDIO_URL`` alike: the URL
is printed, and the server authenticates by the token alone.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator, Sequence
from urllib.parse import quote, urlsplit

from ser_models.exceptions import ConfigError, OracleError

__all__ = ["LabelStudioClient", "LabelStudioError", "check_server_url", "is_loopback_host", "shown_url"]

_REDACTED = "<redacted>"


class LabelStudioError(OracleError):
    """The Label Studio server refused a request or could not be reached (message: method, path, status and
    the server's own explanation; never the token)."""


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ``::1``): traffic that never leaves the host."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown_url(url: str) -> str:
    """``url`` as messages show it: without any user name or password (``https://host:port/path``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def check_server_url(url: str, allow_insecure_http: bool, key: str = "active.label_studio.url") -> str:
    """``url`` without a trailing slash, or ConfigError for a URL holding a user name or password, a scheme other
    than http(s), or a plain-http server beyond this machine.

    Args:
        url: the server's base URL, from the config or the environment.
        allow_insecure_http: accept plain http to another machine.
        key: where the URL came from (``active.label_studio.url`` or ``LABEL_STUDIO_URL``), for messages.
    """
    parts = urlsplit(url)
    shown = shown_url(url)
    if "@" in parts.netloc:
        # Every source is treated as the config key is: the user info would be printed with the URL (the
        # project line, the project's address, every error), and Label Studio authenticates by the access
        # token alone (requests would send the user info as Basic auth in place of the token's header).
        raise ConfigError(f"{key}={shown} holds a user name or password (before '@'): they are never taken from "
                          "a URL, which the job prints. Give the URL without them and the access token in the "
                          "environment variable active.label_studio.api_key_env names")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key} must be an http(s):// URL of the server, got {shown!r}")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback_host(parts.hostname):
        raise ConfigError(f"{key}={shown} is plain http to another machine: the access token "
                          "would cross the network in clear text. Use https://, reach the server through a "
                          "loopback address (e.g. a port-forward to 127.0.0.1), or set "
                          "active.label_studio.allow_insecure_http=true on a network you trust")
    return url.rstrip("/")


def _is_jwt(token: str) -> bool:
    return token.count(".") == 2 and all(token.split("."))


class LabelStudioClient:
    """Talks to one Label Studio server as one user.

    Args:
        url: the server's base URL, e.g. ``https://labelstudio.internal`` or ``http://127.0.0.1:8080``.
        token: a personal access token or a legacy token (Account & Settings in the UI).
        timeout: seconds per request.
        retries: attempts for a request that fails to connect or gets a 5xx (a busy or restarting server).
        allow_insecure_http: accept a plain ``http://`` URL of another machine (the token then travels in clear
            text); loopback addresses never need it.
        key: where ``url`` came from, for messages (``active.label_studio.url`` or ``LABEL_STUDIO_URL``).

    Raises:
        ConfigError: a URL holding a user name or password, a URL that is not http(s), or plain http beyond
            loopback without ``allow_insecure_http``.
    """

    def __init__(self, url: str, token: str, timeout: float = 30.0, retries: int = 3,
                 allow_insecure_http: bool = False, key: str = "active.label_studio.url"):
        import requests

        if not url:
            raise LabelStudioError("no Label Studio URL: set active.label_studio.url or LABEL_STUDIO_URL")
        if not token:
            raise LabelStudioError("no Label Studio token (empty)")
        self.url = check_server_url(url, allow_insecure_http, key)
        self.timeout = float(timeout)
        self.retries = max(1, int(retries))
        self._session = requests.Session()
        self._token = token
        self._access: str | None = None

    def __repr__(self) -> str:
        return f"LabelStudioClient(url={self.url!r}, token={_REDACTED})"

    def redact(self, text: str) -> str:
        """``text`` with the token and the current access token replaced by ``<redacted>``."""
        for secret in (self._token, self._access):
            if secret:
                text = text.replace(secret, _REDACTED)
        return text

    # ------------------------------------------------------------------------------------------ transport
    def _auth_header(self, refresh: bool = False) -> dict[str, str]:
        if not _is_jwt(self._token):
            return {"Authorization": f"Token {self._token}"}
        if self._access is None or refresh:
            r = self._send("POST", "/api/token/refresh", json={"refresh": self._token}, auth=False)
            self._access = r.json()["access"]
        return {"Authorization": f"Bearer {self._access}"}

    def _send(self, method: str, path: str, auth: bool = True, **kwargs):
        import requests

        last: Exception | None = None
        # A POST that timed out may still have created its tasks: never send it twice (the oracle re-lists the
        # round's tasks on the next read and creates only what is missing).
        attempts = self.retries if method in ("GET", "PATCH") else 1
        attempt, refreshed = 0, False
        while attempt < attempts:
            headers = self._auth_header() if auth else {}
            try:
                r = self._session.request(method, self.url + path, headers=headers, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                last = exc
                attempt += 1
                if attempt < attempts:
                    time.sleep(min(2.0 ** attempt, 10.0))
                continue
            if r.status_code == 401 and auth and _is_jwt(self._token) and not refreshed:
                # The access token expired; the server refused the request, so sending it again is safe.
                self._auth_header(refresh=True)
                refreshed = True
                continue
            attempt += 1
            if r.status_code >= 500 and attempt < attempts:
                time.sleep(min(2.0 ** attempt, 10.0))
                continue
            if r.status_code >= 400:
                raise LabelStudioError(self.redact(f"Label Studio {method} {path} -> HTTP {r.status_code}: "
                                                   f"{_explain(r)}"))
            return r
        raise LabelStudioError(self.redact(f"Label Studio at {self.url} unreachable ({method} {path}, {attempts} "
                                           f"attempt{'s' if attempts > 1 else ''}): {last}"))

    def _json(self, method: str, path: str, **kwargs):
        r = self._send(method, path, **kwargs)
        return r.json() if r.content else None

    # ------------------------------------------------------------------------------------------- endpoints
    def whoami(self) -> dict:
        """The token's user (checks URL and token in one call)."""
        return self._json("GET", "/api/current-user/whoami")

    def _pages(self, path: str, key: str) -> Iterator[dict]:
        """Every item of a paginated list endpoint (``path`` with a query string), page by page until an empty or
        missing page or the reported total: the server may cap the page size below the one asked for."""
        page, seen = 1, 0
        while True:
            try:
                got = self._json("GET", f"{path}&page={page}")
            except LabelStudioError as exc:
                if "HTTP 404" in str(exc) and page > 1:  # past the last page
                    return
                raise
            items = got.get(key, []) if isinstance(got, dict) else got
            yield from items
            seen += len(items)
            total = got.get("total", got.get("count")) if isinstance(got, dict) else None
            if not items or (total is not None and seen >= int(total)) or not isinstance(got, dict):
                return
            page += 1

    def find_project(self, title: str) -> dict | None:
        """The project titled exactly ``title`` (the newest one if several), or None."""

        rows = [p for p in self._pages(f"/api/projects/?title={quote(title)}&page_size=100", "results")
                if p.get("title") == title]
        return max(rows, key=lambda p: p["id"]) if rows else None

    def create_project(self, **fields) -> dict:
        return self._json("POST", "/api/projects/", json=fields)

    def update_project(self, project: int, **fields) -> dict:
        return self._json("PATCH", f"/api/projects/{project}/", json=fields)

    def tasks(self, project: int, page_size: int = 500) -> Iterator[dict]:
        """Every task of ``project`` with its annotations (``fields=all``), page by page."""
        yield from self._pages(f"/api/tasks/?project={project}&page_size={page_size}&fields=all", "tasks")

    def import_tasks(self, project: int, tasks: Sequence[dict]) -> list[int]:
        """Create ``tasks`` (``{"data": {...}}`` each); returns their ids in order."""
        got = self._json("POST", f"/api/projects/{project}/import?return_task_ids=true", json=list(tasks))
        ids = got.get("task_ids")
        if ids is None or len(ids) != len(tasks):
            raise LabelStudioError(f"Label Studio import into project {project} returned {got!r} for "
                                   f"{len(tasks)} tasks")
        return [int(i) for i in ids]

    def upload_file(self, project: int, name: str, data: bytes, content_type: str) -> str:
        """Upload one file into ``project``'s storage without creating a task; returns the URL a task's data
        uses to play it (``/data/upload/<project>/<name>``)."""
        got = self._json("POST", f"/api/projects/{project}/import?commit_to_project=false",
                         files={"file": (name, data, content_type)})
        ids = got.get("file_upload_ids") or []
        if len(ids) != 1:
            raise LabelStudioError(f"Label Studio upload of {name!r} into project {project} returned {got!r}")
        info = self._json("GET", f"/api/import/file-upload/{ids[0]}")
        return "/data/" + str(info["file"]).lstrip("/")

    def local_storages(self, project: int) -> list[dict]:
        return self._json("GET", f"/api/storages/localfiles?project={project}")

    def add_local_storage(self, project: int, path: str, title: str) -> dict:
        """Connect a folder of the server's disk to ``project`` (the server serves files under it through
        ``/data/local-files/?d=``; it must lie under the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)."""
        return self._json("POST", "/api/storages/localfiles", json={
            "project": project, "path": path, "title": title, "use_blob_urls": True, "regex_filter": ""})

    def set_task_overlap(self, task: int, overlap: int, is_labeled: bool = False, data: dict | None = None) -> None:
        """Ask for ``overlap`` annotations of ``task``; ``is_labeled=False`` puts it back into the annotators'
        queue (the server does not recompute ``is_labeled`` on this update, and its queue serves unlabelled
        tasks only). ``data``: the task's whole new data, when it changes too."""
        fields = {"overlap": int(overlap), "is_labeled": bool(is_labeled)}
        if data is not None:
            fields["data"] = data
        self._json("PATCH", f"/api/tasks/{task}", json=fields)

    def users(self) -> dict[int, str]:
        """``{user id: email}`` of the organisation's users (names annotators in the ledger)."""
        return {int(u["id"]): str(u.get("email") or u.get("username") or u["id"])
                for u in self._json("GET", "/api/users/")}


def _explain(response) -> str:
    """The server's explanation of an error, short: its validation errors or detail, else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("validation_errors") or body.get("detail") or body)[:500]
    return str(body)[:500]
