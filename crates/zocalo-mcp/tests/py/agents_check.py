"""Calls zocalo's `agents_spawn` MCP tool with the official Python SDK's client (stdio) and
prints one JSON document of what it saw, for zocalo's tests to assert on.

usage: agents_check.py COMMAND [ARGS...]
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def seen(result):
    return {"is_error": result.isError, "text": text_of(result),
            "structured": result.structuredContent}


async def main():
    params = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:], env=dict(os.environ))
    out = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            spawn = [t for t in tools.tools if t.name == "agents_spawn"]
            out["tool"] = (
                {"description": spawn[0].description, "input_schema": spawn[0].inputSchema}
                if spawn else None
            )

            # The first task takes longest, the last none: answers must still come back in
            # input order.
            ok = await session.call_tool("agents_spawn", {"tasks": [
                {"id": "alpha", "prompt": "wait 400: first question"},
                {"id": "beta", "prompt": "wait 150: second question"},
                {"id": "gamma", "prompt": "third question"},
            ]})
            out["ok"] = seen(ok)

            bad = {
                "empty": {"tasks": []},
                "duplicate": {"tasks": [{"id": "x", "prompt": "p"}, {"id": "x", "prompt": "q"}]},
                "over_budget": {"tasks": [{"id": f"t{i}", "prompt": "p"} for i in range(4)]},
                "concurrency": {"tasks": [{"id": "x", "prompt": "p"}], "concurrency": 0},
                "timeout": {"tasks": [{"id": "x", "prompt": "p"}], "timeout_secs": -1},
                "missing_prompt": {"tasks": [{"id": "x"}]},
            }
            out["bad"] = {}
            for name, args in bad.items():
                out["bad"][name] = seen(await session.call_tool("agents_spawn", args))

            # Still serving after the errors.
            out["after_errors"] = seen(await session.call_tool("pool_status", {}))
    print(json.dumps(out))


asyncio.run(main())
