"""A small MCP server made with the official Python SDK's FastMCP, used by zocalo's MCP
client tests. Transport: stdio (default) or streamable HTTP (`--http PORT`).

Tools:
  add(a, b)         -> a + b
  echo(text)        -> text
  fail(message)     -> raises (an MCP tool error)
  crash()           -> the process exits at once (a crashed server)
  slow(seconds)     -> sleeps, then "done"
  pid()             -> this process's pid (tells a restarted server from the first one)
"""

import asyncio
import os
import sys

from mcp.server.fastmcp import FastMCP

port = None
if "--http" in sys.argv:
    port = int(sys.argv[sys.argv.index("--http") + 1])

mcp = FastMCP("pytools", host="127.0.0.1", port=port or 8000)


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@mcp.tool()
def fail(message: str) -> str:
    """Always fails with the message."""
    raise ValueError(message)


@mcp.tool()
def crash() -> str:
    """Exit the server process at once."""
    sys.stderr.write("pytools: crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


@mcp.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "done"


@mcp.tool()
def pid() -> int:
    """This server process's id."""
    return os.getpid()


if __name__ == "__main__":
    sys.stderr.write(f"pytools: starting (pid {os.getpid()})\n")
    sys.stderr.flush()
    if port is not None:
        mcp.run(transport="streamable-http")
    else:
        mcp.run()
