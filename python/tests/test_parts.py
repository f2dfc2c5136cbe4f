"""memory, schedule, pool, agents and skills, on both backends where the store matters."""

import shutil

import pytest

import zocalo
from conftest import ROOT


def test_memory_add_search_forget(z):
    boat = z.memory.add("The boat is named Seraphina.", scope="user:ada", meta={"source": "chat", "n": 2})
    z.memory.add("Ada's cat is called Pixel.", scope="user:ada")
    z.memory.add("The boat of bob is the Nautilus.", scope="user:bob")
    assert boat.startswith("mem_")

    hits = z.memory.search("boat", scope="user:ada", limit=5)
    assert [h["id"] for h in hits] == [boat]
    assert hits[0]["text"] == "The boat is named Seraphina."
    assert hits[0]["metadata"] == {"source": "chat", "n": 2}
    assert hits[0]["scope"] == "user:ada"
    assert set(hits[0]) == {"id", "text", "score", "scope", "metadata"}

    both = z.memory.search("boat", scope=["user:ada", "user:bob"], limit=5)
    assert {h["scope"] for h in both} == {"user:ada", "user:bob"}
    assert z.memory.stats()["memories"] == 3

    z.memory.forget(boat)
    assert z.memory.search("boat", scope="user:ada") == []


def test_memory_default_scope(z):
    z.memory.add("Tea, never coffee.")
    assert [h["scope"] for h in z.memory.search("coffee")] == [zocalo.DEFAULT_SCOPE]


def test_schedule_add_then_list(z):
    with pytest.warns(UserWarning, match="no worker that runs `ask` jobs"):
        added = z.schedule.add(
            "daily",
            rrule="FREQ=DAILY",
            start="2026-01-01T08:00:00",
            tz="Europe/Berlin",
            ask="Summarise my day",
        )
    assert added["id"].startswith("sched_")
    assert added["action"] == {"kind": "ask", "message": "Summarise my day"}
    assert added["next_run_at"].endswith(":00:00Z")
    with pytest.warns(UserWarning):
        z.schedule.add("backup", rrule="FREQ=WEEKLY;BYDAY=SU", start="2026-01-04T03:00:00", tz="UTC", shell="true")
    listed = z.schedule.list()
    assert sorted(a["name"] for a in listed) == ["backup", "daily"]
    assert z.schedule.pause("daily")["paused"] is True
    assert z.schedule.resume("daily")["paused"] is False
    assert z.schedule.runs("daily") == []
    z.schedule.remove("backup")
    assert [a["name"] for a in z.schedule.list()] == ["daily"]
    with pytest.raises(zocalo.UsageError, match="already exists"):
        z.schedule.add("daily", rrule="FREQ=DAILY", start="2026-01-01T08:00:00", tz="UTC", ask="again")
    with pytest.warns(UserWarning):
        sent = z.schedule.add(
            "report", rrule="FREQ=DAILY", start="2026-01-01T08:00:00", tz="UTC", ask="Report", deliver="telegram:42"
        )
    assert sent["action"] == {"kind": "ask", "message": "Report", "deliver": "telegram:42"}
    with pytest.raises(zocalo.UsageError, match="unknown channel"):
        z.schedule.add("bad", rrule="FREQ=DAILY", start="2026-01-01T08:00:00", tz="UTC", ask="x", deliver="sms:1")
    with pytest.raises(zocalo.UsageError, match="persona"):
        z.schedule.add("bad", rrule="FREQ=DAILY", start="2026-01-01T08:00:00", tz="UTC", ask="x", persona="ghost")


def test_pool_submit_returns_ids(z):
    (one,) = z.pool.submit("shell", {"cmd": ["echo", "hi"]})
    assert one.startswith("job_")
    many = z.pool.submit("noop", count=3, priority=5, labels=["gpu"], key="batch-1")
    assert len(many) == 3 and len(set(many)) == 3
    # The same key finds the same jobs: an idempotent retry.
    assert z.pool.submit("noop", count=3, priority=5, labels=["gpu"], key="batch-1") == many
    job = z.pool.get(one)
    assert job["state"] == "queued" and job["kind"] == "shell"
    assert job["payload"] == {"cmd": ["echo", "hi"]}
    assert z.pool.get("job_0000000000000000000000000000000a") is None
    assert z.pool.stats()["queued"] == 4


def test_agents_spawn_all(z):
    tasks = ["alpha", {"id": "b", "prompt": "beta"}, ("c", "gamma")]
    results = z.agents.spawn_all(tasks, concurrency=8, tools=False)
    assert [r["id"] for r in results] == ["0", "b", "c"]
    assert [r["status"] for r in results] == ["ok"] * 3
    assert [r["output"].rsplit(" ", 1)[1] for r in results] == ["alpha", "beta", "gamma"]
    assert all(r["elapsed_ms"] >= 0 for r in results)
    one = z.agents.spawn("delta", tools=False)
    assert one["status"] == "ok" and one["output"].endswith("delta")


def test_skills_list_and_run(env):
    skills = env / "home" / "skills"
    shutil.copytree(ROOT / "crates/zocalo-skills/tests/fixtures/valid/hello-world", skills / "hello-world")
    z = zocalo.Zocalo(home=env / "home")
    listed = z.skills.list()
    assert [s["name"] for s in listed] == ["hello-world"]
    assert listed[0]["description"].startswith("Greets someone by name")
    out = z.skills.run("hello-world", ["Ada"])
    assert out["exit_code"] == 0, out
    assert out["stdout"].strip() == "Hello, Ada! (checksum 262, from hello-world in hello-world)"
    assert out["timed_out"] is False
    with pytest.raises(zocalo.UsageError, match="nosuch"):
        z.skills.run("nosuch")
