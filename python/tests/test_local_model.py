"""The embedded local model answers from Python (the weights the Rust suite fetched)."""

import os
import pathlib

import zocalo
from conftest import missing

MODELS = pathlib.Path(os.environ.get("ZOCALO_TEST_MODELS") or os.path.expanduser("~/.cache/zocalo-models-test"))


def test_local_model_answers_one_short_question(monkeypatch, env):
    if not (MODELS / "smollm2-135m-instruct").is_dir():
        missing(f"no local model weights in {MODELS}: `zocalo models fetch` with ZOCALO_MODELS_DIR={MODELS}")
    monkeypatch.setenv("ZOCALO_MODELS_DIR", str(MODELS))
    monkeypatch.delenv("ZOCALO_MODEL")  # the fake provider's model name
    z = zocalo.Zocalo(home=env / "home")
    r = z.ask("What is the capital of France?", provider="local")
    assert r["provider"] == "local"
    assert r["text"].strip(), r
    assert r["stop_reason"] in ("end_turn", "max_tokens")
    assert "paris" in r["text"].lower(), r["text"]
