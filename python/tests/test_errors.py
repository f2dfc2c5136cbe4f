"""Errors: the hierarchy, and the message the CLI prints after `error: `."""

import subprocess

import pytest

import zocalo
from conftest import TEST_KEY, target_bin


def cli_error(args):
    """(exit code, message) of the CLI for `args`, or None when the CLI is not built."""
    cli = target_bin("zocalo", "ZOCALO_TEST_CLI")
    if not cli.exists():
        return None
    out = subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=60)
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), out.stderr
    return out.returncode, line[len("error: ") :]


def test_hierarchy():
    for cls in (zocalo.UsageError, zocalo.ProviderError, zocalo.BudgetExceeded):
        assert issubclass(cls, zocalo.Error)
    assert issubclass(zocalo.Error, Exception)
    assert zocalo.UsageError.__module__ == "zocalo"


def test_empty_message_is_a_usage_error_with_the_cli_message(zs):
    with pytest.raises(zocalo.UsageError) as e:
        zs.ask("   ")
    assert str(e.value) == "the message is empty: say something"
    cli = cli_error(["ask", "   "])
    if cli:
        assert cli == (2, str(e.value))


def test_unknown_provider_is_a_usage_error_with_the_cli_message(zs):
    with pytest.raises(zocalo.UsageError) as e:
        zs.ask("hi", provider="nosuch")
    assert str(e.value).startswith('unknown provider "nosuch"; known providers: ')
    cli = cli_error(["ask", "--provider", "nosuch", "hi"])
    if cli:
        assert cli == (2, str(e.value))


def test_rejected_key_is_a_provider_error_and_the_key_is_scrubbed(zs):
    with pytest.raises(zocalo.ProviderError) as e:
        zs.ask("hi [fake:status=401]")
    msg = str(e.value)
    assert "openai rejected the API key (HTTP 401)" in msg, msg
    assert TEST_KEY not in msg
    cli = cli_error(["ask", "hi [fake:status=401]"])
    if cli:
        assert cli == (1, msg)


def test_context_budget_is_budget_exceeded(env):
    home = env / "home"
    home.mkdir()
    (home / "config.toml").write_text("[ask]\ncontext_tokens = 256\n")
    z = zocalo.Zocalo(home=home)
    with pytest.raises(zocalo.BudgetExceeded) as e:
        z.ask("hello " * 600)
    assert "more than the context budget of 256" in str(e.value)
    cli = cli_error(["ask", "hello " * 600])
    if cli:
        assert cli == (1, str(e.value))


def test_bad_input_to_every_part_is_a_usage_error(zs):
    with pytest.raises(zocalo.UsageError):
        zs.memory.add("   ", scope="user:ada")
    with pytest.raises(zocalo.UsageError):
        zs.schedule.add("x", rrule="FREQ=SOMETIMES", start="2026-01-01T08:00:00", tz="UTC", ask="hi")
    with pytest.raises(zocalo.UsageError):
        zs.schedule.add("x", rrule="FREQ=DAILY", start="2026-01-01T08:00:00", tz="Mars/Olympus", ask="hi")
    with pytest.raises(zocalo.UsageError):
        zs.pool.submit("nosuchkind", {})
    with pytest.raises(zocalo.UsageError):
        zs.pool.submit("shell", {"cmd": "not a list"})
    with pytest.raises(zocalo.UsageError):
        zs.agents.spawn_all([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(zocalo.UsageError):
        zs.ask("hi", conversation_id="not-an-id")
    with pytest.raises(zocalo.UsageError):
        zs.ask("hi", persona="pirate")
    with pytest.raises(zocalo.UsageError):
        zocalo.Zocalo(database_url="mysql://nope")


def test_token_budget_is_budget_exceeded(env):
    home = env / "budget-home"
    home.mkdir()
    (home / "config.toml").write_text("[budgets]\ndaily_tokens = 1\n")
    z = zocalo.Zocalo(home=home)
    # A budget counts once reached: the first ask is under it, and spends it.
    z.ask("first")
    with pytest.raises(zocalo.BudgetExceeded) as e:
        z.ask("second")
    assert "daily_tokens" in str(e.value), str(e.value)
