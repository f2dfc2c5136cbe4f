"""Drives a stdio MCP server with the official Python SDK's client and prints one JSON
document of what it saw, for zocalo's tests to assert on.

usage: client_check.py COMMAND [ARGS...]      (stdio)
       client_check.py --url http://HOST:PORT/mcp [--token TOKEN]  (streamable HTTP; the
           token is sent as `Authorization: Bearer TOKEN`)
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def main():
    out = {}
    if sys.argv[1] == "--url":
        headers = None
        if len(sys.argv) > 4 and sys.argv[3] == "--token":
            headers = {"Authorization": f"Bearer {sys.argv[4]}"}
        async with streamablehttp_client(sys.argv[2], headers=headers) as (read, write, _):
            await check(read, write, out)
    else:
        params = StdioServerParameters(
            command=sys.argv[1], args=sys.argv[2:], env=dict(os.environ)
        )
        async with stdio_client(params) as (read, write):
            await check(read, write, out)
    print(json.dumps(out))


async def check(read, write, out):
    async with ClientSession(read, write) as session:
        init = await session.initialize()
        out["server_name"] = init.serverInfo.name
        out["protocol_version"] = init.protocolVersion
        out["has_tools_capability"] = init.capabilities.tools is not None
        tools = await session.list_tools()
        out["tools"] = {
            t.name: {"description": t.description, "input_schema": t.inputSchema}
            for t in tools.tools
        }

        saved = await session.call_tool(
            "memory_save", {"text": "The user's cat is called Miso."}
        )
        out["save"] = {"is_error": saved.isError, "text": text_of(saved),
                       "structured": saved.structuredContent}
        found = await session.call_tool("memory_search", {"query": "cat name"})
        out["search"] = {"is_error": found.isError, "text": text_of(found),
                         "structured": found.structuredContent}

        try:
            await session.call_tool("no_such_tool", {})
            out["unknown"] = {"raised": False}
        except McpError as e:
            out["unknown"] = {"raised": True, "code": e.error.code, "message": e.error.message}

        bad = await session.call_tool("memory_search", {"query": 42})
        out["bad_args"] = {"is_error": bad.isError, "text": text_of(bad)}
        gone = await session.call_tool("memory_forget", {"id": "mem_does_not_exist"})
        out["forget_missing"] = {"is_error": gone.isError, "text": text_of(gone)}

        # Still serving after the errors.
        again = await session.call_tool("memory_search", {"query": "Miso"})
        out["after_errors"] = {"is_error": again.isError, "text": text_of(again)}
        stats = await session.call_tool("pool_status", {})
        out["pool_status"] = {"is_error": stats.isError, "structured": stats.structuredContent}
        skills = await session.call_tool("skills_list", {})
        out["skills_list"] = {"is_error": skills.isError, "structured": skills.structuredContent}


asyncio.run(main())
