"""zocalo from Python: the same runtime, data home, config and database as the `zocalo` CLI.

    from zocalo import Zocalo
    z = Zocalo()                                        # $ZOCALO_HOME or ~/.zocalo
    r = z.ask("What time is it in Tokyo?", conv_key="discord:42")
    print(r["text"])

Every call that waits releases the GIL; Ctrl-C during one raises KeyboardInterrupt and stops
the work (an interrupted ask stores nothing). Each waiting call has an async twin on the same
object (`aask`, `aask_stream`, `amemory.search`, `aschedule.add`, `apool.submit`,
`aagents.spawn_all`, `askills.run`): it runs the call in a worker thread
(`asyncio.to_thread`), and cancelling the awaiting task stops the work within 50 ms.

Errors are `zocalo.Error` or one of its subclasses (`UsageError`, `ProviderError`,
`BudgetExceeded`), with the message the CLI prints after `error: `. See docs/python.md.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    TypedDict,
    TypeVar,
    Union,
)

from . import _zocalo
from ._zocalo import BudgetExceeded, Error, ProviderError, UsageError

__version__: str = _zocalo.__version__

__all__ = [
    "Zocalo",
    "AskStream",
    "AsyncAskStream",
    "Answer",
    "Error",
    "UsageError",
    "ProviderError",
    "BudgetExceeded",
    "DEFAULT_SCOPE",
    "__version__",
]

#: The scope `memory add` / `memory search` use when none is given (the CLI's default).
DEFAULT_SCOPE = "user:default"

T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]


class Usage(TypedDict):
    input_tokens: int
    output_tokens: int


class Answer(TypedDict):
    """What `ask` returns: the document `zocalo ask --json` prints."""

    conversation_id: str
    text: str
    provider: str
    model: str
    new_conversation: bool
    steps: int
    stop_reason: str
    usage: Usage
    tool_calls: List[Dict[str, Any]]


async def _twin(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs a waiting call in a worker thread; cancelling the awaiting task stops the call."""
    # Imported here: asyncio is most of `import zocalo`'s time, and sync callers never need it.
    import asyncio

    cancel = _zocalo.Cancel()
    try:
        return await asyncio.to_thread(call, *args, cancel=cancel, **kwargs)
    except asyncio.CancelledError:
        cancel.cancel()
        raise


def _scopes(scope: Union[str, Sequence[str], None]) -> List[str]:
    if scope is None:
        return [DEFAULT_SCOPE]
    if isinstance(scope, str):
        return [scope]
    return list(scope) or [DEFAULT_SCOPE]


class AskStream(Iterator[Dict[str, Any]]):
    """The events of one ask, as they happen: `{"type": "text", "text"}`,
    `{"type": "tool_call", "id", "name", "arguments"}`, `{"type": "tool_result", "call_id",
    "name", "is_error", "content"}`, and last `{"type": "done", "answer": {...}}` (the answer
    is also kept in `.answer`). Closing the stream (or leaving its `with` block) before the
    end stops the ask, which then stores nothing."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.answer: Optional[Answer] = None

    def __iter__(self) -> "AskStream":
        return self

    def __next__(self) -> Dict[str, Any]:
        event = json.loads(next(self._raw))
        if event["type"] == "done":
            self.answer = event["answer"]
        return event

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> "AskStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def text(self) -> str:
        """Consumes the rest of the stream; returns the answer's text."""
        for _ in self:
            pass
        return self.answer["text"] if self.answer else ""


class AsyncAskStream:
    """`AskStream` for `async for`: each event is awaited in a worker thread."""

    def __init__(self, raw: Any, cancel: Any) -> None:
        self._raw = raw
        self._cancel = cancel
        self.answer: Optional[Answer] = None

    def __aiter__(self) -> "AsyncAskStream":
        return self

    async def __anext__(self) -> Dict[str, Any]:
        import asyncio

        try:
            raw = await asyncio.to_thread(next, self._raw, None)
        except asyncio.CancelledError:
            self._cancel.cancel()
            raise
        if raw is None:
            raise StopAsyncIteration
        event = json.loads(raw)
        if event["type"] == "done":
            self.answer = event["answer"]
        return event

    async def aclose(self) -> None:
        self._cancel.cancel()
        self._raw.close()


class _Part:
    def __init__(self, rt: Any) -> None:
        self._rt = rt


class Memory(_Part):
    """Long-term memory (`zocalo memory ...`): hybrid keyword + meaning search."""

    def add(
        self,
        text: str,
        scope: str = DEFAULT_SCOPE,
        meta: Optional[Dict[str, Any]] = None,
        *,
        cancel: Any = None,
    ) -> str:
        """Remembers `text` in `scope` (user:NAME, agent:NAME, ...); returns its id (`mem_…`)."""
        metadata = json.dumps(meta) if meta is not None else None
        return self._rt.memory_add(text, scope, metadata, cancel=cancel)

    def search(
        self,
        query: str,
        scope: Union[str, Sequence[str], None] = None,
        limit: int = 10,
        *,
        cancel: Any = None,
    ) -> List[Dict[str, Any]]:
        """The best `limit` memories for `query` in `scope` (default user:default):
        `[{"id", "text", "score", "scope", "metadata"}]`, best first."""
        if limit < 1:
            raise UsageError("limit must be at least 1")
        return json.loads(self._rt.memory_search(query, _scopes(scope), limit, cancel=cancel))

    def forget(self, id: str, *, cancel: Any = None) -> None:
        """Deletes a memory for good (database and every index)."""
        self._rt.memory_forget(id, cancel=cancel)

    def stats(self, *, cancel: Any = None) -> Dict[str, Any]:
        """Counts per scope, chunks, vectors and the embedder in use (`memory stats --json`)."""
        return json.loads(self._rt.memory_stats(cancel=cancel))


class AsyncMemory(_Part):
    async def add(self, text: str, scope: str = DEFAULT_SCOPE, meta: Optional[Dict[str, Any]] = None) -> str:
        return await _twin(Memory(self._rt).add, text, scope, meta)

    async def search(
        self, query: str, scope: Union[str, Sequence[str], None] = None, limit: int = 10
    ) -> List[Dict[str, Any]]:
        return await _twin(Memory(self._rt).search, query, scope, limit)

    async def forget(self, id: str) -> None:
        await _twin(Memory(self._rt).forget, id)

    async def stats(self) -> Dict[str, Any]:
        return await _twin(Memory(self._rt).stats)


class Schedule(_Part):
    """Automations (`zocalo schedule ...`): an RFC 5545 rule in a time zone, and what to do.
    The daemon (`zocalo daemon start`) or a worker runs the jobs they fire."""

    def add(
        self,
        name: str,
        *,
        rrule: str,
        start: str,
        tz: str,
        ask: Optional[str] = None,
        skill: Optional[str] = None,
        args: Sequence[str] = (),
        shell: Optional[str] = None,
        conversation_id: Optional[str] = None,
        misfire: Optional[str] = None,
        persona: Optional[str] = None,
        deliver: Optional[str] = None,
        cancel: Any = None,
    ) -> Dict[str, Any]:
        """Adds an automation doing exactly one of `ask` (a message for the model), `skill`
        (with `args`) or `shell` (a command for `sh -c`); `start` is local wall time
        (YYYY-MM-DDTHH:MM:SS) in `tz`. An ask may run as `persona` and have each answer
        delivered to `deliver` (telegram:CHAT_ID, email:ADDRESS, webhook:NAME). Returns it
        with its `next_run_at`; warns (UserWarning) when no worker that runs its jobs is up."""
        added, warning = self._rt.schedule_add(
            name,
            rrule,
            start,
            tz,
            ask=ask,
            skill=skill,
            args=list(args),
            shell=shell,
            conversation_id=conversation_id,
            misfire=misfire,
            persona=persona,
            deliver=deliver,
            cancel=cancel,
        )
        if warning:
            warnings.warn(warning, UserWarning, stacklevel=2)
        return json.loads(added)

    def list(self, *, cancel: Any = None) -> List[Dict[str, Any]]:
        """Every automation with its next run (`schedule list --json`)."""
        return json.loads(self._rt.schedule_list(cancel=cancel))

    def remove(self, name: str, *, cancel: Any = None) -> None:
        self._rt.schedule_change("remove", name, cancel=cancel)

    def pause(self, name: str, *, cancel: Any = None) -> Dict[str, Any]:
        return json.loads(self._rt.schedule_change("pause", name, cancel=cancel))

    def resume(self, name: str, *, cancel: Any = None) -> Dict[str, Any]:
        return json.loads(self._rt.schedule_change("resume", name, cancel=cancel))

    def runs(self, name: str, limit: int = 50, *, cancel: Any = None) -> List[Dict[str, Any]]:
        """The automation's runs, newest first (`schedule runs NAME --json`)."""
        return json.loads(self._rt.schedule_runs(name, limit, cancel=cancel))


class AsyncSchedule(_Part):
    async def add(self, name: str, **kwargs: Any) -> Dict[str, Any]:
        return await _twin(Schedule(self._rt).add, name, **kwargs)

    async def list(self) -> List[Dict[str, Any]]:
        return await _twin(Schedule(self._rt).list)

    async def remove(self, name: str) -> None:
        await _twin(Schedule(self._rt).remove, name)

    async def pause(self, name: str) -> Dict[str, Any]:
        return await _twin(Schedule(self._rt).pause, name)

    async def resume(self, name: str) -> Dict[str, Any]:
        return await _twin(Schedule(self._rt).resume, name)

    async def runs(self, name: str, limit: int = 50) -> List[Dict[str, Any]]:
        return await _twin(Schedule(self._rt).runs, name, limit)


class Pool(_Part):
    """The compute pool's queue (`zocalo pool ...`)."""

    def submit(
        self,
        kind: str,
        payload: Any = None,
        *,
        priority: int = 0,
        labels: Sequence[str] = (),
        count: int = 1,
        key: Optional[str] = None,
        max_attempts: Optional[int] = None,
        timeout: Optional[float] = None,
        cancel: Any = None,
    ) -> List[str]:
        """Enqueues `count` jobs of `kind` (noop, shell `{"cmd": [prog, args...]}`, ask
        `{"message", ...}`, skill `{"name", "args"}`); returns their ids (`job_…`)."""
        return self._rt.pool_submit(
            kind,
            json.dumps({} if payload is None else payload),
            priority=priority,
            labels=list(labels),
            count=count,
            key=key,
            max_attempts=max_attempts,
            timeout=timeout,
            cancel=cancel,
        )

    def get(self, id: str, *, cancel: Any = None) -> Optional[Dict[str, Any]]:
        """One job with its state, result and last error (`pool show ID --json`), or None."""
        raw = self._rt.pool_get(id, cancel=cancel)
        return None if raw is None else json.loads(raw)

    def stats(self, *, cancel: Any = None) -> Dict[str, int]:
        """Jobs per state (`pool stats --json`)."""
        return json.loads(self._rt.pool_stats(cancel=cancel))


class AsyncPool(_Part):
    async def submit(self, kind: str, payload: Any = None, **kwargs: Any) -> List[str]:
        return await _twin(Pool(self._rt).submit, kind, payload, **kwargs)

    async def get(self, id: str) -> Optional[Dict[str, Any]]:
        return await _twin(Pool(self._rt).get, id)

    async def stats(self) -> Dict[str, int]:
        return await _twin(Pool(self._rt).stats)


Task = Union[str, Dict[str, str], Sequence[str]]


def _tasks_jsonl(tasks: Iterable[Task]) -> str:
    lines = []
    for i, t in enumerate(tasks):
        if isinstance(t, str):
            task = {"id": str(i), "prompt": t}
        elif isinstance(t, dict):
            task = t
        else:
            id_, prompt = t
            task = {"id": id_, "prompt": prompt}
        lines.append(json.dumps(task))
    return "\n".join(lines)


class Agents(_Part):
    """Sub-agents (`zocalo agents ...`): many prompts answered in parallel."""

    def spawn_all(
        self,
        tasks: Iterable[Task],
        *,
        concurrency: Optional[int] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        tools: bool = True,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        on_pool: bool = False,
        cancel: Any = None,
    ) -> List[Dict[str, Any]]:
        """Runs one agent per task (a prompt string, whose id is its index, or
        `{"id", "prompt"}`, or `(id, prompt)`); returns one result per task in input order:
        `[{"id", "status": "ok"|"error", "output", "elapsed_ms", ...}]`."""
        return json.loads(
            self._rt.agents_spawn_all(
                _tasks_jsonl(tasks),
                concurrency=concurrency,
                provider=provider,
                model=model,
                no_tools=not tools,
                timeout=timeout,
                deadline=deadline,
                on_pool=on_pool,
                cancel=cancel,
            )
        )

    def spawn(self, prompt: str, **kwargs: Any) -> Dict[str, Any]:
        """One agent (a batch of one): its result."""
        return self.spawn_all([{"id": "agent", "prompt": prompt}], concurrency=1, **kwargs)[0]


class AsyncAgents(_Part):
    async def spawn_all(self, tasks: Iterable[Task], **kwargs: Any) -> List[Dict[str, Any]]:
        return await _twin(Agents(self._rt).spawn_all, list(tasks), **kwargs)

    async def spawn(self, prompt: str, **kwargs: Any) -> Dict[str, Any]:
        return await _twin(Agents(self._rt).spawn, prompt, **kwargs)


class Skills(_Part):
    """Agent Skills of the data home (`$ZOCALO_HOME/skills`), `~/.agents/skills` and
    `./.agents/skills`. Scripts run sandboxed by the launcher named in `ZOCALO_LAUNCHER` (the
    `zocalo` binary); without it they run unconfined, as on a kernel without Landlock."""

    def list(self) -> List[Dict[str, Any]]:
        """Every loadable skill (`skills list --json`)."""
        return json.loads(self._rt.skills_list())

    def run(
        self,
        name: str,
        args: Sequence[str] = (),
        *,
        script: Optional[str] = None,
        timeout: float = 60.0,
        cancel: Any = None,
    ) -> Dict[str, Any]:
        """Runs the skill's script: `{"exit_code", "stdout", "stderr", "timed_out",
        "elapsed_ms"}` (a failing script is a result, not an exception)."""
        return json.loads(
            self._rt.skills_run(name, list(args), script=script, timeout=timeout, cancel=cancel)
        )


class AsyncSkills(_Part):
    async def list(self) -> List[Dict[str, Any]]:
        return Skills(self._rt).list()

    async def run(self, name: str, args: Sequence[str] = (), **kwargs: Any) -> Dict[str, Any]:
        return await _twin(Skills(self._rt).run, name, args, **kwargs)


class Zocalo:
    """One zocalo runtime: the data home (`home`, default `$ZOCALO_HOME` or `~/.zocalo`),
    its config.toml and database (`database_url`, default `ZOCALO_DATABASE_URL`, config's
    `database_url`, else the SQLite file in the home). Opening runs the migrations. Safe to
    share between threads; make one per process and keep it."""

    def __init__(self, home: Optional[PathLike] = None, database_url: Optional[str] = None) -> None:
        self._rt = _zocalo.Runtime(os.fspath(home) if home is not None else None, database_url)
        self.memory = Memory(self._rt)
        self.schedule = Schedule(self._rt)
        self.pool = Pool(self._rt)
        self.agents = Agents(self._rt)
        self.skills = Skills(self._rt)
        self.amemory = AsyncMemory(self._rt)
        self.aschedule = AsyncSchedule(self._rt)
        self.apool = AsyncPool(self._rt)
        self.aagents = AsyncAgents(self._rt)
        self.askills = AsyncSkills(self._rt)

    @property
    def home(self) -> str:
        """The data home in use."""
        return os.fspath(self._rt.home)

    @property
    def database(self) -> str:
        """The database in use, as shown to users (no password)."""
        return self._rt.database

    def ask(
        self,
        message: str,
        conv_key: Optional[str] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        persona: Optional[str] = None,
        *,
        conversation_id: Optional[str] = None,
        tools: bool = True,
        allow: Optional[Sequence[str]] = None,
        yes: bool = False,
        cancel: Any = None,
    ) -> Answer:
        """Asks and waits for the answer; returns the document `zocalo ask --json` prints.
        `conv_key` keeps one conversation per key of yours (`discord:42`), created on first
        use; or continue `conversation_id`. Provider and model default as in the CLI;
        `persona` is a `[personas.NAME]` of config.toml. Nobody can approve a tool from a
        program, so tools whose decision is `ask` are refused unless `allow` names them (names
        or globs) or `yes` is true (never a `deny`), as `zocalo ask --allow/--yes`."""
        return json.loads(
            self._rt.ask(
                message,
                conv_key=conv_key,
                conversation_id=conversation_id,
                provider=provider,
                model=model,
                no_tools=not tools,
                persona=persona,
                allow=list(allow) if allow is not None else None,
                yes=yes,
                cancel=cancel,
            )
        )

    def ask_stream(
        self,
        message: str,
        conv_key: Optional[str] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        persona: Optional[str] = None,
        *,
        conversation_id: Optional[str] = None,
        tools: bool = True,
        allow: Optional[Sequence[str]] = None,
        yes: bool = False,
        cancel: Any = None,
    ) -> AskStream:
        """Asks; the returned iterator yields the answer's events as they come (see
        `AskStream`). The ask starts at once; errors surface while iterating. `persona`,
        `allow` and `yes` as for `ask`."""
        return AskStream(
            self._rt.ask_stream(
                message,
                conv_key=conv_key,
                conversation_id=conversation_id,
                provider=provider,
                model=model,
                no_tools=not tools,
                persona=persona,
                allow=list(allow) if allow is not None else None,
                yes=yes,
                cancel=cancel,
            )
        )

    async def aask(self, message: str, conv_key: Optional[str] = None, **kwargs: Any) -> Answer:
        """`ask` for asyncio."""
        return await _twin(self.ask, message, conv_key, **kwargs)

    def aask_stream(self, message: str, conv_key: Optional[str] = None, **kwargs: Any) -> AsyncAskStream:
        """`ask_stream` for `async for`."""
        cancel = _zocalo.Cancel()
        stream = self.ask_stream(message, conv_key, cancel=cancel, **kwargs)
        return AsyncAskStream(stream._raw, cancel)

    def close(self) -> None:
        """Closes the database connections; calls that need the database fail after this."""
        self._rt.close()

    def __enter__(self) -> "Zocalo":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._rt)
