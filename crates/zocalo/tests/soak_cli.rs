//! Short soak runs in CI (the long ones are benchmarks: docs/BENCHMARKS.md, "Soak and load"):
//! `zocalo serve` under mixed traffic from concurrent clients, and `zocalo daemon run`
//! firing automations, both driven by `zocalo_testkit::load` against the real binary with a
//! fake provider speaking the OpenAI wire format. RSS growth is not judged here: a run this
//! short cannot tell a leak from caches filling up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use zocalo_testkit::load::{run_daemon, run_serve, Actions, DaemonOptions, ServeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_every_request_of_mixed_traffic_without_a_5xx() {
    let mut o = ServeOptions::new(env!("CARGO_BIN_EXE_zocalo"), Duration::from_secs(20));
    o.clients = 4;
    // Each client forgets its oldest memory past 5: the forget path is in the mix too.
    o.memory_window = 5;
    o.sample_every = Duration::from_secs(1);
    o.max_rss_growth_pct = None;
    let r = run_serve(&o).await.unwrap();
    let failures = r.failures();
    assert!(
        failures.is_empty(),
        "{}\n{failures:?}\n{:#?}\n{:#?}",
        r.table(),
        r.failure_sample,
        r.error_log_sample
    );
    // Every kind of request was sent (forgets included), more than once, and answered as
    // expected.
    assert_eq!(r.routes.len(), 9, "{}", r.table());
    for route in &r.routes {
        assert!(route.requests >= 2, "{}", r.table());
        assert_eq!(route.server_errors + route.unanswered, 0, "{}", r.table());
    }
    assert_eq!(r.server_errors, 0);
    // The chats reached the provider; the jobs all ran on the server's worker.
    assert!(r.upstream_requests > 0, "{}", r.table());
    let submitted = r
        .routes
        .iter()
        .find(|x| x.route == "POST /api/jobs")
        .map(|x| x.requests)
        .unwrap();
    assert_eq!(r.jobs["succeeded"].as_u64(), Some(submitted), "{}", r.jobs);
    assert!(r.process.samples >= 10, "{:?}", r.process);
    assert!(r.process.fds_end > 0 && r.process.rss_end_kib > 0);
    assert_eq!(r.error_log_lines, 0, "{:#?}", r.error_log_sample);
}

async fn daemon_fires_every_due_run(db_url: Option<String>, automations: usize) {
    let mut o = DaemonOptions::new(env!("CARGO_BIN_EXE_zocalo"), automations, 3);
    o.database_url = db_url;
    o.period_secs = 5;
    o.settle = Duration::from_secs(4);
    o.actions = Actions::Mixed;
    o.sample_every = Duration::from_secs(1);
    o.max_rss_growth_pct = None;
    let r = run_daemon(&o).await.unwrap();
    let failures = r.failures();
    assert!(
        failures.is_empty(),
        "{}\n{failures:?}\n{:#?}\n{:#?}",
        r.table(),
        r.failure_sample,
        r.error_log_sample
    );
    assert_eq!(r.expected_runs, automations as u64 * 3);
    assert_eq!(r.completed_runs, r.expected_runs, "{}", r.table());
    assert_eq!(r.fired_runs, r.expected_runs, "{}", r.table());
    // Half the automations ask the fake provider: one chat per run at least.
    let asks = (automations / 2) as u64 * 3;
    assert!(r.upstream_requests as u64 >= asks, "{}", r.table());
    // Each run started after its occurrence, and not absurdly late.
    assert!(r.start_late_p50_ms >= 0.0, "{}", r.table());
    assert!(r.start_late_max_ms < 5000.0, "{}", r.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_completes_every_due_run_of_its_automations_sqlite() {
    daemon_fires_every_due_run(None, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_completes_every_due_run_of_its_automations_postgres() {
    let db = zocalo_testkit::db::postgres().await;
    daemon_fires_every_due_run(Some(db.url()), 4).await;
    db.cleanup().await;
}
