"""The examples in python/examples, run as their users would run them."""

import importlib.util
import json
import os
import threading
import urllib.request

import pytest

import zocalo
from conftest import ROOT, run_python

EXAMPLES = ROOT / "python" / "examples"


@pytest.fixture
def example_env(env, backend):
    e = os.environ.copy()
    if backend:
        e["ZOCALO_DATABASE_URL"] = backend
    return e


def test_wsgi_endpoint(example_env, monkeypatch, backend):
    if backend:
        monkeypatch.setenv("ZOCALO_DATABASE_URL", backend)
    # A fresh module per test: it opens its Zocalo (this test's database) at import.
    spec = importlib.util.spec_from_file_location("wsgi_app", EXAMPLES / "wsgi_app.py")
    wsgi_app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wsgi_app)
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    class Threaded(__import__("socketserver").ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server("127.0.0.1", 0, wsgi_app.app, server_class=Threaded, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def post(body):
        req = urllib.request.Request(base + "/ask", data=json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        status, first = post({"message": "What time is it?", "user": "ada"})
        assert status == 200 and first["text"].startswith("It is now "), first
        status, again = post({"message": "And now?", "user": "ada"})
        assert again["conversation_id"] == first["conversation_id"]
        status, bob = post({"message": "Hi", "user": "bob"})
        assert bob["conversation_id"] != first["conversation_id"]
        status, bad = post({"message": "  ", "user": "ada"})
        assert status == 400 and bad["error"] == "the message is empty: say something"
        status, failed = post({"message": "x [fake:status=401]", "user": "ada"})
        assert status == 502 and "rejected the API key" in failed["error"], failed
    finally:
        server.shutdown()
        wsgi_app.z.close()


def test_chat_bot_keys_conversations_by_channel(example_env):
    lines = "general\tHello\nrandom\tHi there\ngeneral\t/remember The standup is at 9:30.\n"
    lines += "general\t/recall standup\nrandom\t/recall standup\ngeneral\tBye\n"
    out = run_python([str(EXAMPLES / "chat_bot.py")], env=example_env, input=lines)
    assert out.returncode == 0, out.stderr
    replies = [l.split("\t", 1) for l in out.stdout.splitlines()]
    assert [c for c, _ in replies] == ["general", "random", "general", "general", "random", "general"]
    assert replies[2][1] == "noted"
    assert replies[3][1] == "The standup is at 9:30."
    assert replies[4][1] == "nothing"
    # One conversation per channel: both channels' asks landed in their own.
    z = zocalo.Zocalo(database_url=example_env.get("ZOCALO_DATABASE_URL"))
    a = z.ask("which?", conv_key="chat:general", tools=False)
    b = z.ask("which?", conv_key="chat:random", tools=False)
    assert a["conversation_id"] != b["conversation_id"]
    assert a["new_conversation"] is False and b["new_conversation"] is False


def test_cron_script_is_idempotent(example_env):
    first = run_python([str(EXAMPLES / "cron_job.py")], env=example_env)
    assert first.returncode == 0, first.stderr
    assert "added morning-brief" in first.stdout and "added weekly-cleanup" in first.stdout
    again = run_python([str(EXAMPLES / "cron_job.py")], env=example_env)
    assert again.returncode == 0, again.stderr
    assert "added" not in again.stdout
    assert "2 automations" in again.stdout
    z = zocalo.Zocalo(database_url=example_env.get("ZOCALO_DATABASE_URL"))
    # The same day's job is one job: the idempotency key found it again.
    assert z.pool.stats()["queued"] == 1
    assert z.memory.stats()["scopes"]["agent:cron"] == 2
