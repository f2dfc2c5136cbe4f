// The official OpenAI Node client against `zocalo serve`'s /v1, unchanged.
// argv: BASE_URL (ending in /v1) TOKEN. Env: ZOCALO_TEST_NODE_MODULES (where `openai` is).
// Prints one JSON document of what the client saw; the Rust test compares it with what the
// fake upstream provider was scripted to say.
import { createRequire } from "node:module";
import path from "node:path";

const [baseURL, token] = process.argv.slice(2);
const require = createRequire(path.join(process.env.ZOCALO_TEST_NODE_MODULES, "/"));
const openai = require("openai");
const OpenAI = openai.OpenAI || openai.default || openai;

const client = new OpenAI({ baseURL, apiKey: token, maxRetries: 0, timeout: 30_000 });
const out = {};

// Models, through the client's paginator.
out.models = [];
for await (const m of client.models.list()) out.models.push(m.id);

// The ask loop, whole answer.
let r = await client.chat.completions.create({
  model: "zocalo",
  messages: [{ role: "user", content: "Say hello" }],
});
out.whole = {
  object: r.object,
  id: r.id,
  model: r.model,
  content: r.choices[0].message.content,
  role: r.choices[0].message.role,
  finish_reason: r.choices[0].finish_reason,
  usage: r.usage,
};

// The ask loop, streamed, with usage at the end.
const pieces = [];
const objects = new Set();
let finish = null;
let usage = null;
const stream = await client.chat.completions.create({
  model: "zocalo",
  messages: [{ role: "user", content: "Count to three" }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  objects.add(chunk.object);
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.content) pieces.push(c.delta.content);
    if (c.finish_reason) finish = c.finish_reason;
  }
}
out.streamed = { pieces, finish_reason: finish, usage, objects: [...objects].sort() };

// PROVIDER/MODEL passes through, with the client's streaming helper.
let text = "";
const helper = client.chat.completions.stream({
  model: "openai/gpt-test",
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }],
});
helper.on("content", (delta) => { text += delta; });
const final = await helper.finalChatCompletion();
out.pass_stream = { text, final: final.choices[0].message.content, model: final.model };

// Embeddings: the client asks for base64 by default and decodes it; floats too.
const e = await client.embeddings.create({ model: "zocalo", input: ["the cat sat", "a feline rested"] });
const f = await client.embeddings.create({ model: "zocalo", input: "the cat sat", encoding_format: "float" });
out.embeddings = {
  count: e.data.length,
  dims: e.data.map((d) => d.embedding.length),
  model: e.model,
  b64_first: Array.from(e.data[0].embedding.slice(0, 8)),
  float_first: f.data[0].embedding.slice(0, 8),
  norm: f.data[0].embedding.reduce((s, x) => s + x * x, 0),
};

// Errors come back as the client's own exceptions.
try {
  await client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] });
  out.unknown_model = "no error";
} catch (err) {
  out.unknown_model = { class: err.constructor.name, status: err.status, code: err.code };
}
try {
  await new OpenAI({ baseURL, apiKey: "wrong-token", maxRetries: 0 }).models.list();
  out.bad_token = "no error";
} catch (err) {
  out.bad_token = { class: err.constructor.name, status: err.status };
}

console.log(JSON.stringify(out));
