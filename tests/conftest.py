"""Shared fixtures. Ray starts once per test process (start-up costs seconds on 2 cores; `make test` runs two
processes with pytest-xdist, each with its own local Ray, demo pool and S3 endpoint)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["SER_MODELS_TESTING"] = "1"  # tiny random encoders are expected here: no warning (ser_models.models.model)
# The default encoder (model.encoder.source=smart-turn) resolves into the checkout's cache, the folder make demo and
# the smart_turn_dir fixture import into, never a developer's ~/.cache. Tests that train name a tiny preset.
os.environ.setdefault("SER_ENCODER_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "encoders"))

from ser_models.testing import free_port  # noqa: E402  (after the offline settings above)

#: Where this process's S3 endpoint (moto's standalone server, started on first use by ``s3_bucket``) listens.
#: pyarrow reads these standard AWS variables; Ray workers inherit them through the session's runtime_env,
#: which is fixed when Ray starts, so they are set before any test starts Ray. Set, not defaulted: pytest-xdist
#: workers inherit the controller's environment, and with ``setdefault`` both workers got the controller's
#: port, so one worker's tests used the other's server and failed ("Could not connect") once that worker ended
#: and stopped it. A developer's real AWS settings must never reach the tests either.
S3_ENV = {
    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
for _key, _value in S3_ENV.items():
    os.environ[_key] = _value


#: The per-test limit (s) while mutmut runs a mutant (``make mutation``): the slowest selected test takes 7 s, and
#: a mutant that makes a lock wait forever sleeps (mutmut's own limit counts CPU seconds, which a sleep never
#: spends), so the 300 s of ``--timeout`` would cost five minutes per such mutant.
MUTATION_TEST_TIMEOUT_S = 30


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if not os.environ.get("MUTANT_UNDER_TEST"):
        return
    if (config.getoption("timeout", None) or 0) > MUTATION_TEST_TIMEOUT_S:
        config.option.timeout = MUTATION_TEST_TIMEOUT_S
    # mutmut runs a pytest session per mutant, two at once: each gets its own temporary root, since pytest keeps
    # only the three newest roots under one parent and removes the others, which can be a running session's.
    if not config.option.basetemp:
        import tempfile

        config.option.basetemp = config._mutant_basetemp = tempfile.mkdtemp(prefix="pytest-mutant-")
    # The processes a test starts (a lock holder, a writer killed at a failpoint) import mutmut's copy too, and
    # inherit MUTANT_UNDER_TEST, so a mutant is live in them as in the test itself.
    import ser_models

    copy = str(Path(ser_models.__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join([copy, *filter(None, [os.environ.get("PYTHONPATH")])])


def pytest_unconfigure(config):
    made = getattr(config, "_mutant_basetemp", None)
    if made:  # the session's own temporary root (pytest_configure): nothing else is in it
        import shutil

        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (2 CPUs, no dashboard)."""
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            logging_level="WARNING",
            runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                      **{k: os.environ[k] for k in S3_ENV}}},
        )
    DataContext.get_current().enable_progress_bars = False
    yield ray
    # left running until interpreter exit: several test modules share it


@pytest.fixture(scope="session")
def demo_pool(ray_local, tmp_path_factory):
    """The session's 48-clip demo corpus (seed 0) and its prepared pool (FLAC, all clips kept), built once.

    Splits are speaker-disjoint train/dev/test, each holding all four emotions. Read-only for tests: write
    outputs under your own ``tmp_path``. See ``ser_models.testing.build_demo_pool``.
    """
    from ser_models.testing import build_demo_pool

    return build_demo_pool(tmp_path_factory.mktemp("demo_pool"))


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass


@pytest.fixture(scope="session")
def smart_turn_dir():
    """The pretrained Smart Turn v3.2 Whisper-tiny encoder, imported into ``<repo>/.cache/encoders``.

    The same cached fetch as ``make demo`` (the ``pipecat-ai`` wheel alone, from the package registry, checked
    by sha256), so a machine downloads it once. Tests about quality or conversion use it.
    """
    import fcntl
    from pathlib import Path

    from ser_models.encoders.smart_turn import cached_encoder

    cache = Path(__file__).parents[1] / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers share the cache: one imports, the others wait and reuse it
    with open(cache / ".encoder.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return cached_encoder(cache, quiet=True)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint on 127.0.0.1 for the session: moto's standalone server in a subprocess.

    Yields the endpoint URL (also in ``$AWS_ENDPOINT_URL``, which pyarrow and Ray workers read).
    """
    import subprocess
    import sys
    import time
    import urllib.request

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    port = endpoint.rsplit(":", 1)[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            if proc.poll() is not None:  # it could not listen (the port was taken): never serve from another's
                raise RuntimeError(f"moto server exited ({proc.returncode}) before listening on {endpoint}")
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except RuntimeError:
            raise
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start on {endpoint}") from None
            time.sleep(0.2)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server, request):
    """A fresh, empty bucket on the session's S3 endpoint: ``s3://<bucket>``."""
    import re
    import uuid

    import pyarrow.fs as pafs

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:6]
    pafs.S3FileSystem(endpoint_override=s3_server, allow_bucket_creation=True).create_dir(name)
    return f"s3://{name}"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """A folder on each store: a local path, or a fresh bucket on the session's moto S3 server."""
    return str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_bucket")


def pytest_collection_modifyitems(session, config, items):
    """Modules with a ``slow`` test first, the rest after, each keeping its order.

    ``make test`` hands whole files to two xdist workers in collection order (``--dist loadfile``): a long module
    collected last runs alone while the other worker idles. Longest first keeps both busy to the end.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order within each group is kept
