"""Fixtures of the Python package's suite: the testkit's fake provider as a process, a fresh
data home per test, and both database backends (a temp SQLite file; a fresh schema in the
test Postgres database).

Run by `./x test` (wheel installed into a fresh venv). By hand, with the wheel installed:
    ZOCALO_TEST_FAKE_LLM=$CARGO_TARGET_DIR/debug/zocalo-fake-llm pytest python/tests -q
With ZOCALO_REQUIRE_TOOLS=1 (set by ./x test) a missing tool, database or model fails a test
instead of skipping it.
"""

import os
import pathlib
import subprocess
import sys
import uuid

import pytest

import zocalo

ROOT = pathlib.Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("ZOCALO_REQUIRE_TOOLS") == "1"
PG_URL = os.environ.get("ZOCALO_TEST_PG_URL") or "postgres://postgres@127.0.0.1:5432/test"
# The fake provider is sent this key: it must never appear in an error message.
TEST_KEY = "sk-zocalo-test-5c1f0e"


def missing(what: str) -> None:
    """Skip, or fail under ZOCALO_REQUIRE_TOOLS=1."""
    if REQUIRE:
        pytest.fail(f"{what} (ZOCALO_REQUIRE_TOOLS=1: nothing may be skipped)")
    pytest.skip(what)


def target_bin(name: str, env: str) -> pathlib.Path:
    """A binary of the workspace: $ENV, else $CARGO_TARGET_DIR/debug/NAME."""
    if os.environ.get(env):
        return pathlib.Path(os.environ[env])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/zocalo-target")
    return pathlib.Path(target) / "debug" / name


@pytest.fixture(scope="session")
def fake_llm():
    """`zocalo-fake-llm` on a free port; yields its base URL."""
    path = target_bin("zocalo-fake-llm", "ZOCALO_TEST_FAKE_LLM")
    if not path.exists():
        missing(f"{path} is not built: cargo build -p zocalo-testkit --bin zocalo-fake-llm")
    proc = subprocess.Popen([str(path)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening http://"), line
        yield line.split(" ", 1)[1]
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path, fake_llm):
    """Every test: a fresh data home, the fake provider as `openai`, keyword-only memory."""
    for k in list(os.environ):
        if k.endswith("_API_KEY") or k in ("ZOCALO_DATABASE_URL", "ZOCALO_MODEL", "ZOCALO_LAUNCHER"):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("ZOCALO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm + "/v1")
    monkeypatch.setenv("ZOCALO_PROVIDER", "openai")
    monkeypatch.setenv("ZOCALO_MODEL", "zocalo-fake")
    # The MiniLM embedder is the Rust suite's business; keywords keep these tests fast.
    monkeypatch.setenv("ZOCALO_EMBEDDER", "none")
    # Skills only from the test's data home, not from this machine's ~/.agents/skills.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pg_schema_url():
    """A fresh schema in the test database; returns (url, drop)."""
    schema = f"py_{uuid.uuid4().hex}"
    try:
        subprocess.run(
            ["psql", PG_URL, "-q", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE SCHEMA "{schema}"'],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        missing(f"Postgres at {PG_URL} is not reachable with psql: {e}")
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-c%20search_path%3D{schema}"

    def drop():
        subprocess.run(
            ["psql", PG_URL, "-q", "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
            capture_output=True,
            timeout=30,
        )

    return url, drop


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    """The database URL of a fresh database on each backend (None: the home's SQLite file)."""
    if request.param == "sqlite":
        yield None
        return
    url, drop = pg_schema_url()
    yield url
    drop()


@pytest.fixture
def z(backend, env):
    """A Zocalo on a fresh data home and database, closed after the test."""
    zz = zocalo.Zocalo(home=env / "home", database_url=backend)
    yield zz
    zz.close()


@pytest.fixture
def zs(env):
    """A Zocalo on the SQLite file of a fresh data home."""
    zz = zocalo.Zocalo(home=env / "home")
    yield zz
    zz.close()


def run_python(args, env=None, input=None, timeout=120):
    """Runs this interpreter on `args` (examples are run as their users would)."""
    return subprocess.run(
        [sys.executable, *args],
        env=env or os.environ.copy(),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
