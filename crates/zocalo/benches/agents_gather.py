"""The baseline for the agents benchmark: the seed's approach, asyncio + aiohttp `gather`.

Sends N streamed Chat Completions requests (the same JSON body zocalo's OpenAI provider
sends: system prompt, one user message, stream with usage) to URL, at most C at once (C = N:
unbounded, as the seed did), reads every SSE stream to its `[DONE]`, and prints one JSON line
{"n", "ok", "wall_s"} with the wall time of the gather alone (interpreter start-up excluded).

usage: python agents_gather.py URL N C
Benchmark only: needs aiohttp (pinned in tools/py-requirements.txt).
"""

import asyncio
import json
import sys
import time

import aiohttp

SYSTEM = (
    "You are zocalo, a personal AI assistant running on the user's own computer. Answer "
    "concisely and accurately."
)


async def one(session, url, sem, i):
    body = {
        "model": "gpt-bench",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"question {i}"},
        ],
        "max_tokens": 1024,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with sem:
        async with session.post(
            url, json=body, headers={"authorization": "Bearer sk-bench"}
        ) as resp:
            text = []
            done = False
            async for raw in resp.content:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                for choice in chunk.get("choices", []):
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        text.append(piece)
            return done and resp.status == 200 and bool(text)


async def main(url, n, c):
    sem = asyncio.Semaphore(c)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        results = await asyncio.gather(*(one(session, url, sem, i) for i in range(n)))
        wall = time.perf_counter() - start
    print(json.dumps({"n": n, "ok": sum(results), "wall_s": wall}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
