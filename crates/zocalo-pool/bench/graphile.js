// graphile-worker side of the pool benchmark: N noop jobs, concurrency C, same Postgres.
const { run, makeWorkerUtils } = require("graphile-worker");
const N = +(process.env.N || 20000), C = +(process.env.C || 10);
const connectionString = process.env.PG || "postgres://postgres@127.0.0.1:5432/test";
const schema = "gw_bench";
(async () => {
  const { Client } = require("pg");
  const c = new Client({ connectionString }); await c.connect();
  await c.query(`drop schema if exists ${schema} cascade`); await c.end();
  const utils = await makeWorkerUtils({ connectionString, schema });
  await utils.migrate();
  const specs = Array.from({ length: N }, () => ({ identifier: "noop", payload: {} }));
  let t = process.hrtime.bigint();
  for (let i = 0; i < N; i += 5000) await utils.addJobs(specs.slice(i, i + 5000));
  const enq = Number(process.hrtime.bigint() - t) / 1e9;
  let done = 0, finish;
  const all = new Promise((r) => (finish = r));
  t = process.hrtime.bigint();
  const runner = await run({
    connectionString, schema, concurrency: C, noHandleSignals: true, pollInterval: 1000,
    taskList: { noop: async () => {} },
  });
  runner.events.on("job:success", () => { if (++done === N) finish(); });
  await all;
  const drain = Number(process.hrtime.bigint() - t) / 1e9;
  await runner.stop(); await utils.release();
  console.log(`graphile-worker ${require("graphile-worker/package.json").version}: enqueue ${(N / enq).toFixed(0)} jobs/s (${enq.toFixed(3)} s)   drain ${(N / drain).toFixed(0)} jobs/s (${drain.toFixed(3)} s), concurrency ${C}`);
  const c2 = new Client({ connectionString }); await c2.connect();
  await c2.query(`drop schema if exists ${schema} cascade`); await c2.end();
})().catch((e) => { console.error(e); process.exit(1); });
