"""The async twins."""

import asyncio

import pytest

import zocalo


def test_async_twins(z):
    async def main():
        answers = await asyncio.gather(*(z.aask(f"q{i}", conv_key=f"chan:{i}", tools=False) for i in range(4)))
        mid = await z.amemory.add("The boat is named Seraphina.", scope="user:ada")
        hits = await z.amemory.search("boat", scope="user:ada")
        ids = await z.apool.submit("noop", count=2)
        agents = await z.aagents.spawn_all(["x", "y"], concurrency=2, tools=False)
        events = [e async for e in z.aask_stream("stream me", tools=False)]
        with pytest.raises(zocalo.UsageError):
            await z.aask("")
        return answers, mid, hits, ids, agents, events

    answers, mid, hits, ids, agents, events = asyncio.run(main())
    assert [a["text"].rsplit(" ", 1)[1] for a in answers] == ["q0", "q1", "q2", "q3"]
    assert [h["id"] for h in hits] == [mid]
    assert len(ids) == 2
    assert [a["status"] for a in agents] == ["ok", "ok"]
    assert events[-1]["type"] == "done"
    assert events[-1]["answer"]["text"].endswith("stream me")
