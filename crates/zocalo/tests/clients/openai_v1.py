"""The official OpenAI Python client against `zocalo serve`'s /v1, unchanged.

argv: BASE_URL (ending in /v1) TOKEN MODE. Prints one JSON document of what the client saw;
the Rust test compares it with what the fake upstream provider was scripted to say.
"""
import json
import sys

import openai

base_url, token, mode = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=30)
out = {}

if mode == "chat":
    out["models"] = [m.id for m in client.models.list().data]
    # The ask loop, whole answer.
    r = client.chat.completions.create(
        model="zocalo", messages=[{"role": "user", "content": "Say hello"}]
    )
    out["whole"] = {
        "object": r.object,
        "id": r.id,
        "model": r.model,
        "content": r.choices[0].message.content,
        "role": r.choices[0].message.role,
        "finish_reason": r.choices[0].finish_reason,
        "usage": r.usage.model_dump() if r.usage else None,
    }
    # The ask loop, streamed, with usage at the end.
    pieces, finish, usage, objects = [], None, None, set()
    stream = client.chat.completions.create(
        model="zocalo",
        messages=[{"role": "user", "content": "Count to three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        objects.add(chunk.object)
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    out["streamed"] = {
        "pieces": pieces,
        "finish_reason": finish,
        "usage": usage,
        "objects": sorted(objects),
    }
    # PROVIDER/MODEL passes through, whole and streamed.
    r = client.chat.completions.create(
        model="openai/gpt-test",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
    )
    out["pass_whole"] = {"model": r.model, "content": r.choices[0].message.content}
    text = ""
    with client.chat.completions.stream(
        model="openai/gpt-test", messages=[{"role": "user", "content": "Hi again"}]
    ) as s:
        for event in s:
            if event.type == "content.delta":
                text += event.delta
        final = s.get_final_completion()
    out["pass_stream"] = {"text": text, "final": final.choices[0].message.content}
    # Errors come back as the client's own exceptions.
    try:
        client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
        out["unknown_model"] = "no error"
    except openai.NotFoundError as e:
        out["unknown_model"] = {"status": e.status_code, "code": e.code}
    bad = openai.OpenAI(base_url=base_url, api_key="wrong-token", max_retries=0)
    try:
        bad.models.list()
        out["bad_token"] = "no error"
    except openai.AuthenticationError as e:
        out["bad_token"] = {"status": e.status_code}
elif mode == "embeddings":
    # The client asks for base64 by default and decodes it; ask for floats too.
    r = client.embeddings.create(model="zocalo", input=["the cat sat", "a feline rested"])
    f = client.embeddings.create(
        model="zocalo", input="the cat sat", encoding_format="float"
    )
    out = {
        "count": len(r.data),
        "dims": [len(d.embedding) for d in r.data],
        "model": r.model,
        "b64_first": r.data[0].embedding[:8],
        "float_first": f.data[0].embedding[:8],
        "norm": sum(x * x for x in f.data[0].embedding),
    }
else:
    raise SystemExit(f"unknown mode {mode}")

print(json.dumps(out))
