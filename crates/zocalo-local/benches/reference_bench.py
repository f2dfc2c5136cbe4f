"""The reference side of the local-model benchmarks (not a product dependency).

    pip install llama-cpp-python sentence-transformers
    python reference_bench.py MODELS_DIR
where MODELS_DIR holds what `zocalo models fetch` unpacks. Prints llama.cpp generation and
prompt tokens/s on the same GGUF with 2 threads (greedy), and sentence-transformers
sentences/s on the same sentences `cargo run --release -p zocalo-local --example bench_embed`
uses. Compare with `--example local_chat` and `--example bench_embed` in the same run.
"""

import json
import os
import sys
import time

models = sys.argv[1]
threads = int(os.environ.get("THREADS", "2"))

# ONLY=embed: the embeddings only (no llama-cpp-python needed).
if os.environ.get("ONLY") != "embed":
    import llama_cpp  # noqa: E402
    from llama_cpp import Llama  # noqa: E402

    # llama-cpp-python 0.3.36 built natively on this Sapphire Rapids machine segfaults in
    # llama_decode when the CPU "extra buffer types" (AMX int8 / repacked weights) are on, so they
    # are off by default (LLAMA_EXTRA_BUFTS=1 turns them back on).
    if os.environ.get("LLAMA_EXTRA_BUFTS") != "1":
        _default_params = llama_cpp.llama_model_default_params

        def _no_extra_bufts():
            p = _default_params()
            p.use_extra_bufts = False
            return p

        llama_cpp.llama_model_default_params = _no_extra_bufts
        import llama_cpp.llama as _llama_mod  # noqa: E402
        _llama_mod.llama_cpp.llama_model_default_params = _no_extra_bufts

    gguf = os.path.join(models, "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
    llm = Llama(model_path=gguf, n_threads=threads, n_threads_batch=threads, n_ctx=2048, verbose=False)
    for q, n in [("What is the capital of France?", 64),
                 ("Write a short story about a robot who learns to paint.", 128)]:
        prompt = f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
        llm.reset()
        t0 = time.perf_counter()
        first = None
        text = ""
        count = 0
        for chunk in llm.create_completion(prompt, max_tokens=n, temperature=0.0, top_k=1, stream=True):
            if first is None:
                first = time.perf_counter()
            text += chunk["choices"][0]["text"]
            count += 1
        end = time.perf_counter()
        ptoks = len(llm.tokenize(prompt.encode(), add_bos=False, special=True))
        print(json.dumps({"engine": "llama.cpp", "question": q, "answer": text[:80],
                          "prompt_tokens": ptoks, "ttft_ms": round((first - t0) * 1e3, 1),
                          "gen_tok_s": round((count - 1) / (end - first), 1)}))

from sentence_transformers import SentenceTransformer, models as st_models  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(threads)
mdir = os.path.join(models, "all-minilm-l6-v2")
word = st_models.Transformer(mdir, max_seq_length=256)
pool = st_models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
st = SentenceTransformer(modules=[word, pool, st_models.Normalize()], device="cpu")
here = os.path.dirname(os.path.abspath(__file__))
sentences = json.load(open(os.path.join(here, "..", "tests", "fixtures", "minilm_reference.json")))["sentences"]
short = [s for s in sentences if len(s) < 200]
for name, batch in [("fixture-100", sentences), ("short-x10", short * 10)]:
    st.encode(batch[:32], batch_size=32)
    t0 = time.perf_counter()
    st.encode(batch, batch_size=32)
    dt = time.perf_counter() - t0
    print(json.dumps({"engine": "sentence-transformers", "set": name, "n": len(batch),
                      "sent_s": round(len(batch) / dt, 1)}))
