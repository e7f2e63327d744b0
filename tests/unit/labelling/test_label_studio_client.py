"""The Label Studio client's safety rules: plain http only to loopback unless allowed, and the token never in a
repr or an error, even when the server echoes it back (a real HTTP server on 127.0.0.1 plays such a server)."""

from __future__ import annotations

import http.server
import json
import threading

import pandas as pd
import pytest

from ser_models.exceptions import ConfigError
from ser_models.labelling.config import LabelStudioConfig
from ser_models.labelling.label_studio_client import LabelStudioClient, LabelStudioError, is_loopback_host
from ser_models.labelling.label_studio_oracle import LabelStudioOracle

TOKEN = "0123456789abcdef-secret-token"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2VjcmV0LXNpZ25hdHVyZQ"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://127.9.9.9", "http://[::1]:8080/",
                                 "http://localhost:8080", "http://LOCALHOST.", "https://ls.example.com",
                                 "https://10.0.0.5:8443"])
def test_loopback_and_https_are_accepted(url):
    client = LabelStudioClient(url, TOKEN)
    assert client.url == url.rstrip("/")
    assert LabelStudioConfig(url=url).url == url  # the config accepts them too


@pytest.mark.parametrize("url", ["http://ls.internal:8080", "http://10.0.0.5:8080", "http://[fe80::1]:8080",
                                 "http://localhost.evil.example", "http://127.0.0.1.nip.io"])
def test_plain_http_beyond_loopback_is_refused_unless_allowed(url):
    with pytest.raises(ConfigError, match="active.label_studio.allow_insecure_http=true"):
        LabelStudioClient(url, TOKEN)
    with pytest.raises(ConfigError, match="clear text"):
        LabelStudioConfig(url=url)  # refused when the config loads, before any round
    assert LabelStudioClient(url, TOKEN, allow_insecure_http=True).url == url
    assert LabelStudioConfig(url=url, allow_insecure_http=True).allow_insecure_http


@pytest.mark.parametrize("url", ["ftp://ls.example.com", "ls.example.com:8080", "file:///tmp/x"])
def test_urls_that_are_not_http_are_refused(url):
    with pytest.raises(ConfigError, match="must be an http"):
        LabelStudioClient(url, TOKEN)


def test_credentials_in_a_refused_url_are_not_repeated():
    with pytest.raises(ConfigError) as err:
        LabelStudioClient("http://admin:hunter2@ls.internal:8080", TOKEN)
    assert "hunter2" not in str(err.value)


def test_is_loopback_host():
    assert [is_loopback_host(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "", None, "10.1.1.1")] == [
        True, True, True, False, False, False, False]


def test_repr_hides_the_token():
    for token in (TOKEN, JWT):
        client = LabelStudioClient("http://127.0.0.1:1", token)
        assert token not in repr(client) and "redacted" in repr(client)
        assert client.redact(f"a {token} b") == "a <redacted> b"


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers every request with 400 and a body that repeats the request's Authorization header and body, as
    a careless proxy or a debug-mode server might; a token refresh gets a fake access token first."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path == "/api/token/refresh":
            out, status = json.dumps({"access": "ACCESS-" + TOKEN[::-1]}).encode(), 200
        else:
            out = json.dumps({"detail": f"bad request: auth={self.headers.get('Authorization')} "
                                        f"body={body}"}).encode()
            status = 400
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PATCH = _answer  # noqa: N815

    def log_message(self, *args):  # keep the test's output clean
        pass


@pytest.fixture
def echo_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("token", [TOKEN, JWT])
def test_errors_never_carry_the_token_even_when_the_server_echoes_it(echo_server, token):
    client = LabelStudioClient(echo_server, token, retries=1)
    with pytest.raises(LabelStudioError) as err:
        client.whoami()
    text = str(err.value)
    assert "HTTP 400" in text and "<redacted>" in text
    assert token not in text and "ACCESS-" + TOKEN[::-1] not in text
    with pytest.raises(LabelStudioError) as err:  # the refresh token sent in a body comes back too
        client.create_project(title="x", note=token)
    assert token not in str(err.value)


def test_an_unreachable_server_names_the_url_not_the_token():
    client = LabelStudioClient("http://127.0.0.1:9", TOKEN, timeout=2, retries=1)
    with pytest.raises(LabelStudioError, match="unreachable") as err:
        client.whoami()
    assert TOKEN not in str(err.value) and "127.0.0.1:9" in str(err.value)


def test_the_oracle_refuses_plain_http_from_the_environment_before_any_request(tmp_path, monkeypatch):
    monkeypatch.setenv("SER_TEST_LS_TOKEN", TOKEN)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://labelstudio.internal:8080")
    clips = pd.DataFrame({"utt_id": ["u0"], "path": [str(tmp_path / "u0.wav")], "duration": [1.0]})
    oracle = LabelStudioOracle(LabelStudioConfig(api_key_env="SER_TEST_LS_TOKEN"), ["a", "b"], [], (1.0, 5.0),
                               clips, tmp_path, "t", log=lambda m: None)
    with pytest.raises(ConfigError, match="clear text") as err:
        oracle.project()
    assert TOKEN not in str(err.value)
    allowed = LabelStudioConfig(api_key_env="SER_TEST_LS_TOKEN", allow_insecure_http=True)
    oracle = LabelStudioOracle(allowed, ["a", "b"], [], (1.0, 5.0), clips, tmp_path, "t", log=lambda m: None)
    assert oracle.client.url == "http://labelstudio.internal:8080"
    assert TOKEN not in repr(oracle) + repr(oracle.client)


class _Projects(http.server.BaseHTTPRequestHandler):
    """Plays the project calls of a Label Studio server (no project yet; a created one gets id 7), and records
    every request it receives."""

    seen: list[str] = []

    def _answer(self, body: object, status: int = 200):
        out = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):  # noqa: N802
        self.seen.append(f"GET {self.path}")
        self._answer({"results": [], "count": 0} if self.path.startswith("/api/projects/") else {"id": 1})

    def do_POST(self):  # noqa: N802
        self.seen.append(f"POST {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        fields = json.loads(self.rfile.read(length) or b"{}")
        self._answer({"id": 7, **fields}, 201)

    def log_message(self, *args):
        pass


@pytest.fixture
def projects_server():
    _Projects.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Projects)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


SECRET = "hunter2-pw"


@pytest.mark.parametrize("site", ["created project", "project url", "unreachable"])
def test_user_info_in_label_studio_url_from_the_environment_is_refused_and_never_shown(
        site, projects_server, tmp_path, monkeypatch, capsys):
    """Each place the oracle prints the server's URL: the "created project" line, the project's address and the
    "unreachable" error. A ``user:pass@`` URL in LABEL_STUDIO_URL is refused as the config key is, before any
    request, and the password is in no line, no error and no output."""
    port = 9 if site == "unreachable" else projects_server  # port 9 (discard): nothing listens there
    monkeypatch.setenv("SER_TEST_LS_TOKEN", TOKEN)
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://admin:{SECRET}@127.0.0.1:{port}")
    clips = pd.DataFrame({"utt_id": ["u0"], "path": [str(tmp_path / "u0.wav")], "duration": [1.0]})
    lines: list[str] = []
    oracle = LabelStudioOracle(LabelStudioConfig(api_key_env="SER_TEST_LS_TOKEN"), ["a", "b"], [], (1.0, 5.0),
                               clips, tmp_path, "t", log=lines.append)
    with pytest.raises(ConfigError) as err:
        if site == "created project":
            oracle.project()
        elif site == "project url":
            print(oracle.project_url)
        else:
            oracle.client.whoami()
    shown = "\n".join([str(err.value), *lines, *capsys.readouterr()])
    assert SECRET not in shown and "admin" not in shown
    assert "LABEL_STUDIO_URL" in str(err.value) and "user name or password" in str(err.value)
    assert f"http://127.0.0.1:{port}" in str(err.value)  # the URL is named, without its user info
    assert _Projects.seen == []  # refused before any request


@pytest.mark.parametrize("url", ["https://admin:pw@ls.example.com", "https://token@ls.example.com:8443/",
                                 "http://:pw@127.0.0.1:8080"])
def test_the_client_refuses_user_info_from_any_source(url):
    with pytest.raises(ConfigError, match="user name or password") as err:
        LabelStudioClient(url, TOKEN, key="LABEL_STUDIO_URL")
    assert "pw" not in str(err.value) and "token@" not in str(err.value)
    assert "LABEL_STUDIO_URL" in str(err.value)
    with pytest.raises(ConfigError, match="user name or password"):
        LabelStudioConfig(url=url)


def test_the_oracle_logs_its_project_with_the_url_it_was_given(projects_server, tmp_path, monkeypatch):
    """Without user info the URL is shown as given (the print sites stay informative)."""
    monkeypatch.setenv("SER_TEST_LS_TOKEN", TOKEN)
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{projects_server}")
    clips = pd.DataFrame({"utt_id": ["u0"], "path": [str(tmp_path / "u0.wav")], "duration": [1.0]})
    lines: list[str] = []
    oracle = LabelStudioOracle(LabelStudioConfig(api_key_env="SER_TEST_LS_TOKEN"), ["a", "b"], [], (1.0, 5.0),
                               clips, tmp_path, "t", log=lines.append)
    assert oracle.project()["id"] == 7
    assert any(f"created project 7 'SER active learning: t' at http://127.0.0.1:{projects_server}" in x
               for x in lines)
    assert oracle.project_url == f"http://127.0.0.1:{projects_server}/projects/7/data"
