# Type stubs of the extension module built from crates/zocalo-py. The public API is the
# `zocalo` package around it (python/zocalo/__init__.py); structured values cross as JSON text.
from os import PathLike
from typing import Iterator, List, Optional, Tuple, Union

__version__: str

class Error(Exception): ...
class UsageError(Error): ...
class ProviderError(Error): ...
class BudgetExceeded(Error): ...

class Cancel:
    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

class AskStream(Iterator[str]):
    def __iter__(self) -> AskStream: ...
    def __next__(self) -> str: ...
    def close(self) -> None: ...

class Runtime:
    def __init__(
        self,
        home: Union[str, PathLike[str], None] = None,
        database_url: Optional[str] = None,
        cancel: Optional[Cancel] = None,
    ) -> None: ...
    @property
    def home(self) -> str: ...
    @property
    def database(self) -> str: ...
    def ask(
        self,
        message: str,
        conv_key: Optional[str] = None,
        conversation_id: Optional[str] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        no_tools: bool = False,
        persona: Optional[str] = None,
        allow: Optional[List[str]] = None,
        yes: bool = False,
        cancel: Optional[Cancel] = None,
    ) -> str: ...
    def ask_stream(
        self,
        message: str,
        conv_key: Optional[str] = None,
        conversation_id: Optional[str] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        no_tools: bool = False,
        persona: Optional[str] = None,
        allow: Optional[List[str]] = None,
        yes: bool = False,
        cancel: Optional[Cancel] = None,
    ) -> AskStream: ...
    def memory_add(
        self, text: str, scope: str, metadata: Optional[str] = None, cancel: Optional[Cancel] = None
    ) -> str: ...
    def memory_search(
        self, query: str, scopes: List[str], limit: int = 10, cancel: Optional[Cancel] = None
    ) -> str: ...
    def memory_forget(self, id: str, cancel: Optional[Cancel] = None) -> None: ...
    def memory_stats(self, cancel: Optional[Cancel] = None) -> str: ...
    def schedule_add(
        self,
        name: str,
        rrule: str,
        start: str,
        tz: str,
        ask: Optional[str] = None,
        skill: Optional[str] = None,
        args: List[str] = ...,
        shell: Optional[str] = None,
        conversation_id: Optional[str] = None,
        misfire: Optional[str] = None,
        persona: Optional[str] = None,
        deliver: Optional[str] = None,
        cancel: Optional[Cancel] = None,
    ) -> Tuple[str, Optional[str]]: ...
    def schedule_list(self, cancel: Optional[Cancel] = None) -> str: ...
    def schedule_change(self, verb: str, name: str, cancel: Optional[Cancel] = None) -> Optional[str]: ...
    def schedule_runs(self, name: str, limit: int = 50, cancel: Optional[Cancel] = None) -> str: ...
    def pool_submit(
        self,
        kind: str,
        payload: str,
        priority: int = 0,
        labels: List[str] = ...,
        count: int = 1,
        key: Optional[str] = None,
        max_attempts: Optional[int] = None,
        timeout: Optional[float] = None,
        cancel: Optional[Cancel] = None,
    ) -> List[str]: ...
    def pool_get(self, id: str, cancel: Optional[Cancel] = None) -> Optional[str]: ...
    def pool_stats(self, cancel: Optional[Cancel] = None) -> str: ...
    def agents_spawn_all(
        self,
        tasks_jsonl: str,
        concurrency: Optional[int] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        no_tools: bool = False,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        on_pool: bool = False,
        cancel: Optional[Cancel] = None,
    ) -> str: ...
    def skills_list(self) -> str: ...
    def skills_run(
        self,
        name: str,
        args: List[str] = ...,
        script: Optional[str] = None,
        timeout: float = 60.0,
        cancel: Optional[Cancel] = None,
    ) -> str: ...
    def close(self) -> None: ...
