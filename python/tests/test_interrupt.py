"""Ctrl-C and cancellation: a KeyboardInterrupt during a slow ask stops it, and nothing of
it is stored."""

import asyncio
import signal
import subprocess
import sys
import threading
import time

import pytest

import zocalo


COUNT = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(*(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("conversations", "messages")))
"""


def stored(home):
    """(conversations, messages) in the data home's SQLite file. Read in another process:
    Python's sqlite3 is a second copy of SQLite, and two copies in one process break each
    other's POSIX locks (closing one deletes the other's WAL)."""
    out = subprocess.run(
        [sys.executable, "-c", COUNT, str(home / "zocalo.db")], capture_output=True, text=True, check=True
    )
    return tuple(int(n) for n in out.stdout.split())


def sigint_after(seconds):
    t = threading.Timer(seconds, signal.raise_signal, args=(signal.SIGINT,))
    t.start()
    return t


def test_ctrl_c_cancels_a_running_ask_and_stores_nothing(zs, env):
    # The fake streams "[fake:slow]" answers one word a second: about 10 s in all.
    started = time.monotonic()
    timer = sigint_after(0.5)
    with pytest.raises(KeyboardInterrupt):
        zs.ask("take your time [fake:slow]", tools=False)
    timer.join()
    assert time.monotonic() - started < 3, "the interrupt did not stop the ask promptly"
    assert stored(env / "home") == (0, 0)
    # The runtime is still usable.
    assert zs.ask("still there?", tools=False)["text"].endswith("still there?")
    assert stored(env / "home") == (1, 2)


def test_ctrl_c_stops_a_stream(zs, env):
    stream = zs.ask_stream("slowly [fake:slow]", tools=False)
    timer = sigint_after(1.5)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for event in stream:
            seen.append(event)
    timer.join()
    assert seen and all(e["type"] == "text" for e in seen)
    assert stored(env / "home") == (0, 0)


def test_closing_a_stream_early_stores_nothing(zs, env):
    with zs.ask_stream("slowly [fake:slow]", tools=False) as stream:
        first = next(stream)
    assert first["type"] == "text"
    time.sleep(0.3)
    assert stored(env / "home") == (0, 0)


def test_cancelling_an_async_ask_stops_it(zs, env):
    async def main():
        task = asyncio.ensure_future(zs.aask("slowly [fake:slow]", tools=False))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.monotonic()
        # The worker thread notices within 50 ms; give it a moment, then check.
        await asyncio.sleep(0.3)
        return time.monotonic() - started

    asyncio.run(main())
    assert stored(env / "home") == (0, 0)
