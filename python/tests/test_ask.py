"""ask / ask_stream against the testkit's fake provider, on both backends where the store
matters."""

import json
import subprocess

from conftest import target_bin

ANSWER_FIELDS = {
    "conversation_id",
    "text",
    "provider",
    "model",
    "new_conversation",
    "steps",
    "stop_reason",
    "usage",
    "tool_calls",
}


def test_ask_returns_the_ask_json_document(z):
    r = z.ask("What time is it in Tokyo?", conv_key="discord:42")
    assert set(r) == ANSWER_FIELDS
    assert r["conversation_id"].startswith("conv_")
    # The fake calls current_time once, then quotes its result.
    assert r["text"].startswith("It is now "), r
    assert r["provider"] == "openai"
    assert r["model"] == "zocalo-fake"
    assert r["stop_reason"] == "end_turn"
    assert r["steps"] == 2
    assert [c["name"] for c in r["tool_calls"]] == ["current_time"]
    assert r["usage"]["input_tokens"] >= 0 and r["usage"]["output_tokens"] >= 0
    # A key's conversation is created when the key is first used, before the model answers.
    assert r["new_conversation"] is False
    assert z.ask("no key", tools=False)["new_conversation"] is True


def test_ask_matches_the_cli_json_shape(zs, env):
    cli = target_bin("zocalo", "ZOCALO_TEST_CLI")
    if not cli.exists():
        import pytest

        pytest.skip(f"{cli} is not built")
    out = subprocess.run(
        [str(cli), "ask", "--json", "--no-tools", "hi from the cli"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    from_cli = json.loads(out.stdout)
    from_py = zs.ask("hi from python", tools=False)
    assert set(from_cli) == set(from_py) == ANSWER_FIELDS
    assert from_py["text"] == "Hello from the zocalo fake provider: you said: hi from python"


def test_conv_key_keeps_one_conversation_per_key(z):
    first = z.ask("hello", conv_key="discord:42", tools=False)
    again = z.ask("hello again", conv_key="discord:42", tools=False)
    other = z.ask("hello", conv_key="discord:43", tools=False)
    assert again["conversation_id"] == first["conversation_id"]
    assert other["conversation_id"] != first["conversation_id"]
    # ... and an id continues it too.
    by_id = z.ask("by id", conversation_id=first["conversation_id"], tools=False)
    assert by_id["conversation_id"] == first["conversation_id"]
    assert by_id["new_conversation"] is False


def test_ask_stream_yields_tool_and_text_events_then_the_answer(z):
    events = list(z.ask_stream("What time is it?", conv_key="web:7"))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "tool_call" and events[0]["name"] == "current_time"
    assert kinds[1] == "tool_result" and events[1]["is_error"] is False
    assert kinds[-1] == "done"
    assert set(kinds[2:-1]) == {"text"} and len(kinds) > 4, kinds
    answer = events[-1]["answer"]
    assert "".join(e["text"] for e in events if e["type"] == "text") == answer["text"]
    assert set(answer) == ANSWER_FIELDS


def test_ask_stream_text_helper_and_answer_attribute(zs):
    with zs.ask_stream("Tell me a story", conv_key="web:7", tools=False) as s:
        text = s.text()
    assert text == "Hello from the zocalo fake provider: you said: Tell me a story"
    assert s.answer is not None and s.answer["text"] == text


def test_a_zocalo_is_shared_between_threads(zs):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: zs.ask(f"q{i}", conv_key=f"t:{i}", tools=False), range(16)))
    assert [a["text"].rsplit(" ", 1)[1] for a in answers] == [f"q{i}" for i in range(16)]
    assert len({a["conversation_id"] for a in answers}) == 16
