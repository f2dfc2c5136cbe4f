//! `cargo bench -p zocalo --bench agents`: 1,000 agents against a local OpenAI-format server
//! that answers each request after 50 ms, at concurrency 1000 and 200, `zocalo agents
//! spawn-all` (the real binary: SQLite record, one stored conversation per agent) against the
//! seed's approach, an asyncio + aiohttp `gather` of the same requests (`agents_gather.py`,
//! run with `ZOCALO_TEST_PYTHON`, which needs aiohttp), in the same run against the same
//! server.
//!
//! Reported per run: the batch's own wall time (process start-up excluded on both sides), the
//! process wall time, the overhead per agent over the ideal `ceil(N / C) × 50 ms`, CPU time
//! per agent (user + sys of the whole process, start-up included), and peak RSS (GNU time).
//! `ZOCALO_BENCH_AGENTS` changes N; `ZOCALO_BENCH_ROUNDS` repeats each measurement (the
//! best round is kept, as the least disturbed by other load); `ZOCALO_BENCH_BIN` measures
//! another zocalo binary (an older build, for a before/after comparison).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use zocalo_testkit::fake::{openai_text_sse, FakeServer, Reply};

const DELAY: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug)]
struct Measure {
    /// Wall time of the batch itself, seconds.
    batch_s: f64,
    /// Wall time of the whole process, seconds.
    process_s: f64,
    /// User + system CPU seconds of the process.
    cpu_s: f64,
    /// Peak resident set, MiB.
    rss_mib: f64,
    /// Agents (requests) that succeeded.
    ok: usize,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `cmd` under GNU time; returns (stdout, stderr without time's line, wall, cpu, rss).
fn timed(mut cmd: Command) -> (String, String, f64, f64, f64) {
    let mut full = Command::new("/usr/bin/time");
    full.arg("-f").arg("ZTIME %U %S %M").arg(cmd.get_program());
    full.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => full.env(k, v),
            None => full.env_remove(k),
        };
    }
    let _ = &mut cmd;
    let t = Instant::now();
    let out = full
        .output()
        .expect("run /usr/bin/time (apt-get install time)");
    let wall = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("ZTIME "))
        .expect("GNU time line");
    let f: Vec<f64> = line[6..]
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (stdout, stderr, wall, f[0] + f[1], f[2] / 1024.0)
}

fn zocalo(home: &Path, url: &str, tasks: &Path, c: usize, n: usize) -> Measure {
    let _ = std::fs::remove_dir_all(home);
    std::fs::create_dir_all(home).unwrap();
    // ZOCALO_BENCH_BIN: another build of zocalo to measure with this harness (an older
    // commit's, for a before/after comparison in the same conditions).
    let bin = std::env::var("ZOCALO_BENCH_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_zocalo").to_owned());
    let mut cmd = Command::new(bin);
    cmd.env("ZOCALO_HOME", home)
        .env("ZOCALO_MEMORY", "off")
        .env("OPENAI_BASE_URL", format!("{url}/v1"))
        .env("OPENAI_API_KEY", "sk-bench")
        .env_remove("ZOCALO_DATABASE_URL")
        .env_remove("ZOCALO_PROVIDER")
        .args(["agents", "spawn-all"])
        .arg(tasks)
        .args(["--provider", "openai", "--model", "gpt-bench", "--no-tools"])
        .args(["--concurrency", &c.to_string(), "--json"]);
    let (stdout, stderr, wall, cpu, rss) = timed(cmd);
    let results: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ok = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "ok")
        .count();
    if ok != n {
        eprintln!("zocalo: only {ok} of {n} agents ok; the failures:");
        for r in results
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] != "ok")
            .take(5)
        {
            eprintln!("  {r}");
        }
    }
    // "batch ID: N ok, 0 error, 0.412 s (...)"
    let batch_s = stderr
        .lines()
        .filter(|l| l.starts_with("batch "))
        .find_map(|l| {
            let i = l.find(" error, ")?;
            l[i + 8..].split(' ').next()?.parse().ok()
        })
        .expect("the batch summary line on stderr");
    Measure {
        batch_s,
        process_s: wall,
        cpu_s: cpu,
        rss_mib: rss,
        ok,
    }
}

fn python(py: &str, url: &str, c: usize, n: usize) -> Measure {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/agents_gather.py");
    let mut cmd = Command::new(py);
    cmd.arg(script)
        .arg(format!("{url}/v1/chat/completions"))
        .arg(n.to_string())
        .arg(c.to_string());
    let (stdout, stderr, wall, cpu, rss) = timed(cmd);
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    Measure {
        batch_s: v["wall_s"].as_f64().unwrap(),
        process_s: wall,
        cpu_s: cpu,
        rss_mib: rss,
        ok: v["ok"].as_u64().unwrap_or(0) as usize,
    }
}

fn best(ms: Vec<Measure>) -> Measure {
    ms.into_iter()
        .min_by(|a, b| a.batch_s.total_cmp(&b.batch_s))
        .unwrap()
}

async fn run() {
    let n = env_usize("ZOCALO_BENCH_AGENTS", 1000);
    let rounds = env_usize("ZOCALO_BENCH_ROUNDS", 3).max(1);
    let server = FakeServer::start().await;
    server.respond_with(|_| {
        Reply::sse(openai_text_sse("gpt-bench", &["The ", "answer."])).delay(DELAY)
    });
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({"id": format!("t{i}"), "prompt": format!("question {i}")})
                .to_string()
        })
        .collect();
    std::fs::write(&tasks, lines.join("\n")).unwrap();
    let py = std::env::var("ZOCALO_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    if py.is_none() {
        eprintln!("ZOCALO_TEST_PYTHON is not set: the Python baseline is skipped");
    }

    println!(
        "{n} agents, server answers after {} ms; best of {rounds} rounds\n",
        DELAY.as_millis()
    );
    println!("| runner | concurrency | ok | batch wall | process wall | overhead / agent | CPU / agent | peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for c in [1000usize, 200] {
        let c = c.min(n);
        let ideal = n.div_ceil(c) as f64 * DELAY.as_secs_f64();
        let mut z = Vec::new();
        let mut p = Vec::new();
        for round in 0..rounds {
            let home = dir.path().join(format!("home-{c}-{round}"));
            // Alternate which side goes first so neither always gets the quieter slot.
            if round % 2 == 0 {
                z.push(zocalo(&home, &url, &tasks, c, n));
                if let Some(py) = &py {
                    p.push(python(py, &url, c, n));
                }
            } else {
                if let Some(py) = &py {
                    p.push(python(py, &url, c, n));
                }
                z.push(zocalo(&home, &url, &tasks, c, n));
            }
        }
        let mut rows = vec![("zocalo agents spawn-all", best(z))];
        if !p.is_empty() {
            rows.push(("python asyncio + aiohttp gather", best(p)));
        }
        for (name, m) in &rows {
            println!(
                "| {name} | {c} | {} | {:.3} s | {:.3} s | {:.3} ms | {:.3} ms | {:.1} MiB |",
                m.ok,
                m.batch_s,
                m.process_s,
                (m.batch_s - ideal).max(0.0) * 1000.0 / n as f64,
                m.cpu_s * 1000.0 / n as f64,
                m.rss_mib
            );
        }
        if rows.len() == 2 {
            println!(
                "| ratio zocalo / python | {c} | | {:.2} | {:.2} | | {:.2} | {:.2} |",
                rows[0].1.batch_s / rows[1].1.batch_s,
                rows[0].1.process_s / rows[1].1.process_s,
                rows[0].1.cpu_s / rows[1].1.cpu_s,
                rows[0].1.rss_mib / rows[1].1.rss_mib
            );
        }
    }
}
