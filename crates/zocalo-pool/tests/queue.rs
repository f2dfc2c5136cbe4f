//! The queue on real SQLite and PostgreSQL: enqueue, claim order, labels, idempotency,
//! retries, cancel, reclaim, and lease checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use zocalo_pool::{
    Cancelled, FailOutcome, JobQueue, JobState, NewJob, NodeSpec, RetryPolicy, SqlQueue,
};
use zocalo_testkit::both_backends;

fn kinds() -> Vec<String> {
    vec!["noop".into(), "shell".into()]
}

async fn node(q: &SqlQueue, id: &str, timeout: Duration) {
    q.register_node(&NodeSpec {
        id: id.into(),
        hostname: "test".into(),
        pid: 1,
        labels: vec![],
        kinds: kinds(),
        capacity: 4,
        timeout,
    })
    .await
    .unwrap();
}

both_backends!(enqueue_claim_finish, |store| async move {
    let q = SqlQueue::new(store);
    let ids = q
        .enqueue(&[NewJob::new("noop", json!({"n": 1}))])
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert!(ids[0].created && ids[0].id.starts_with("job_"));
    let job = q.get(&ids[0].id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.payload, json!({"n": 1}));

    node(&q, "node_a", Duration::from_secs(30)).await;
    let claimed = q.claim("node_a", &kinds(), &[], 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);
    assert!(q
        .claim("node_a", &kinds(), &[], 10)
        .await
        .unwrap()
        .is_empty());
    let running = q.get(&ids[0].id).await.unwrap().unwrap();
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.node.as_deref(), Some("node_a"));

    // Another node cannot finish a lease it does not hold.
    let lease = claimed[0].lease();
    assert_eq!(
        q.succeed("node_b", &[(lease.clone(), json!(1))])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        q.succeed("node_a", &[(lease, json!({"ok": true}))])
            .await
            .unwrap(),
        1
    );
    let done = q.get(&ids[0].id).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result, Some(json!({"ok": true})));
    assert!(done.finished_at.is_some());
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.succeeded, stats.total()), (1, 1));
});

both_backends!(priority_then_age_order, |store| async move {
    let q = SqlQueue::new(store);
    let mut jobs = Vec::new();
    for p in [0, 5, -3, 5, 10] {
        let mut j = NewJob::new("noop", json!({"p": p}));
        j.priority = p;
        jobs.push(j);
    }
    let ids = q.enqueue(&jobs).await.unwrap();
    node(&q, "node_a", Duration::from_secs(30)).await;
    let mut order = Vec::new();
    for _ in 0..5 {
        let c = q.claim("node_a", &kinds(), &[], 1).await.unwrap();
        order.push(c[0].id.clone());
    }
    let expect = vec![
        ids[4].id.clone(),
        ids[1].id.clone(),
        ids[3].id.clone(),
        ids[0].id.clone(),
        ids[2].id.clone(),
    ];
    assert_eq!(order, expect);
});

both_backends!(labels_route_jobs, |store| async move {
    let q = SqlQueue::new(store);
    let mut gpu = NewJob::new("noop", json!(null));
    gpu.labels = vec!["gpu".into()];
    let mut both = NewJob::new("noop", json!(null));
    both.labels = vec!["gpu".into(), "linux".into()];
    let plain = NewJob::new("noop", json!(null));
    let ids = q.enqueue(&[gpu, both, plain]).await.unwrap();
    node(&q, "node_a", Duration::from_secs(30)).await;
    let none: Vec<String> = q
        .claim("node_a", &kinds(), &[], 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(none, vec![ids[2].id.clone()]);
    let gpu_only: Vec<String> = q
        .claim("node_a", &kinds(), &["gpu".into()], 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(gpu_only, vec![ids[0].id.clone()]);
    let all: Vec<String> = q
        .claim(
            "node_a",
            &kinds(),
            &["gpu".into(), "linux".into(), "x".into()],
            10,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(all, vec![ids[1].id.clone()]);
    // Kinds route too: a node that only runs `shell` gets no `noop`.
    q.enqueue(&[NewJob::new("noop", json!(null))])
        .await
        .unwrap();
    assert!(q
        .claim("node_a", &["shell".into()], &[], 10)
        .await
        .unwrap()
        .is_empty());
});

both_backends!(idempotency_key_returns_existing, |store| async move {
    let q = SqlQueue::new(store);
    let mut j = NewJob::new("noop", json!({"v": 1}));
    j.key = Some("nightly-2026-03-08".into());
    let first = q.enqueue(std::slice::from_ref(&j)).await.unwrap();
    let mut again = j.clone();
    again.payload = json!({"v": 2});
    let second = q.enqueue(&[again]).await.unwrap();
    assert!(first[0].created);
    assert!(!second[0].created);
    assert_eq!(first[0].id, second[0].id);
    // Two with the same key in one batch: one job.
    let mut k = NewJob::new("noop", json!(null));
    k.key = Some("k2".into());
    let batch = q.enqueue(&[k.clone(), k]).await.unwrap();
    assert_eq!(batch[0].id, batch[1].id);
    assert_eq!(q.stats().await.unwrap().queued, 2);
    assert_eq!(
        q.get(&first[0].id).await.unwrap().unwrap().payload,
        json!({"v": 1})
    );
});

both_backends!(retries_back_off_then_dead, |store| async move {
    let q = SqlQueue::new(store).with_retry(RetryPolicy {
        base: Duration::from_millis(400),
        cap: Duration::from_secs(10),
    });
    let mut j = NewJob::new("noop", json!(null));
    j.max_attempts = 3;
    let id = q.enqueue(&[j]).await.unwrap()[0].id.clone();
    node(&q, "node_a", Duration::from_secs(30)).await;
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        // Wait for the backoff to pass (not claimable before).
        let started = std::time::Instant::now();
        let job = loop {
            let mut c = q.claim("node_a", &kinds(), &[], 1).await.unwrap();
            if let Some(job) = c.pop() {
                break job;
            }
            assert!(started.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if attempt > 1 {
            delays.push(started.elapsed());
        }
        assert_eq!(job.attempt, attempt);
        let out = q.fail("node_a", &job, "boom", true).await.unwrap();
        if attempt < 3 {
            assert!(matches!(out, FailOutcome::Retry { .. }), "{out:?}");
            let queued = q.get(&id).await.unwrap().unwrap();
            assert_eq!(queued.state, JobState::Queued);
            assert_eq!(queued.error.as_deref(), Some("boom"));
        } else {
            assert_eq!(out, FailOutcome::Dead);
        }
    }
    // Backoff: 200..400 ms after the first failure, 400..800 ms after the second.
    assert!(delays[0] >= Duration::from_millis(190), "{delays:?}");
    assert!(delays[1] >= Duration::from_millis(390), "{delays:?}");
    let dead = q.get(&id).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.attempts, 3);
    assert_eq!(q.stats().await.unwrap().dead, 1);

    // Not retryable: failed at once.
    let id = q
        .enqueue(&[NewJob::new("noop", json!(null))])
        .await
        .unwrap()[0]
        .id
        .clone();
    let job = q.claim("node_a", &kinds(), &[], 1).await.unwrap().remove(0);
    assert_eq!(
        q.fail("node_a", &job, "bad", false).await.unwrap(),
        FailOutcome::Failed
    );
    assert_eq!(q.get(&id).await.unwrap().unwrap().state, JobState::Failed);
});

both_backends!(cancel_queued_and_running, |store| async move {
    let q = SqlQueue::new(store);
    let ids = q
        .enqueue(&[
            NewJob::new("noop", json!(null)),
            NewJob::new("noop", json!(null)),
        ])
        .await
        .unwrap();
    node(&q, "node_a", Duration::from_secs(30)).await;
    let running = q.claim("node_a", &kinds(), &[], 1).await.unwrap().remove(0);
    let queued = ids.iter().find(|e| e.id != running.id).unwrap().id.clone();
    assert_eq!(q.cancel(&queued).await.unwrap(), Cancelled::Queued);
    assert_eq!(q.cancel(&running.id).await.unwrap(), Cancelled::Running);
    let c = q.get(&queued).await.unwrap().unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    assert!(c.finished_at.is_some());
    // The worker learns of it through its leases, and finishing does nothing.
    let lost = q.lost_leases("node_a", &[running.lease()]).await.unwrap();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].state, Some(JobState::Cancelled));
    assert_eq!(
        q.succeed("node_a", &[(running.lease(), json!(1))])
            .await
            .unwrap(),
        0
    );
    q.cancel_ack(&running.id).await.unwrap();
    let c = q.get(&running.id).await.unwrap().unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    assert!(c.finished_at.is_some());
    // Cancelling again, or an unknown job: errors that say so.
    let again = q.cancel(&queued).await.unwrap_err().to_string();
    assert!(again.contains("already ended (cancelled)"), "{again}");
    let unknown = q.cancel("job_nope").await.unwrap_err();
    assert!(unknown.is_usage() && unknown.to_string().contains("no job job_nope"));
});

both_backends!(silent_node_jobs_are_reclaimed, |store| async move {
    let q = SqlQueue::new(store);
    let mut last = NewJob::new("noop", json!(null));
    last.max_attempts = 1;
    let ids = q
        .enqueue(&[NewJob::new("noop", json!(null)), last])
        .await
        .unwrap();
    node(&q, "node_dead", Duration::from_millis(300)).await;
    node(&q, "node_live", Duration::from_secs(30)).await;
    let held = q.claim("node_dead", &kinds(), &[], 10).await.unwrap();
    assert_eq!(held.len(), 2);
    assert!(q.reclaim().await.unwrap().is_empty(), "reclaimed too early");
    tokio::time::sleep(Duration::from_millis(400)).await;
    q.heartbeat("node_live", "active").await.unwrap();
    let reclaimed: HashSet<String> = q.reclaim().await.unwrap().into_iter().collect();
    assert_eq!(reclaimed.len(), 2);
    assert_eq!(
        q.get(&ids[0].id).await.unwrap().unwrap().state,
        JobState::Queued
    );
    // Its last attempt was the one lost: dead.
    assert_eq!(
        q.get(&ids[1].id).await.unwrap().unwrap().state,
        JobState::Dead
    );
    let again = q.claim("node_live", &kinds(), &[], 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    // The silent node's late result is refused; it learns it lost the lease.
    assert_eq!(
        q.succeed("node_dead", &[(held[0].lease(), json!(1))])
            .await
            .unwrap(),
        0
    );
    let nodes = q.nodes(10).await.unwrap();
    let dead = nodes.iter().find(|n| n.id == "node_dead").unwrap();
    assert_eq!(dead.state, "lost");
    let live = nodes.iter().find(|n| n.id == "node_live").unwrap();
    assert_eq!((live.state.as_str(), live.running), ("active", 1));
});

both_backends!(release_hands_back_without_counting, |store| async move {
    let q = SqlQueue::new(store);
    let id = q
        .enqueue(&[NewJob::new("noop", json!(null))])
        .await
        .unwrap()[0]
        .id
        .clone();
    node(&q, "node_a", Duration::from_secs(30)).await;
    let job = q.claim("node_a", &kinds(), &[], 1).await.unwrap().remove(0);
    assert!(q.release("node_a", &job.lease()).await.unwrap());
    let j = q.get(&id).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempts), (JobState::Queued, 0));
});

both_backends!(bad_jobs_enqueue_nothing, |store| async move {
    let q = SqlQueue::new(store);
    let good = NewJob::new("noop", json!(null));
    let mut bad = NewJob::new("noop", json!(null));
    bad.priority = 5000;
    let err = q.enqueue(&[good, bad]).await.unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("priority 5000"));
    assert_eq!(q.stats().await.unwrap().total(), 0);
});

both_backends!(concurrent_claimers_never_double_claim, |store| async move {
    let q = SqlQueue::new(store);
    let jobs: Vec<NewJob> = (0..400).map(|i| NewJob::new("noop", json!(i))).collect();
    q.enqueue(&jobs).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..6 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let me = format!("node_{n}");
            node(&q, &me, Duration::from_secs(30)).await;
            let mut got = Vec::new();
            loop {
                let c = q.claim(&me, &kinds(), &[], 7).await.unwrap();
                if c.is_empty() {
                    break got;
                }
                got.extend(c.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 400);
    assert_eq!(unique.len(), 400);
});

both_backends!(large_batches_enqueue_in_one_go, |store| async move {
    let q = SqlQueue::new(store);
    let jobs: Vec<NewJob> = (0..12_000)
        .map(|_| NewJob::new("noop", json!(null)))
        .collect();
    let ids = q.enqueue(&jobs).await.unwrap();
    let unique: HashSet<&String> = ids.iter().map(|e| &e.id).collect();
    assert_eq!(unique.len(), 12_000);
    assert_eq!(q.stats().await.unwrap().queued, 12_000);
    assert_eq!(q.list(Some(JobState::Queued), 5).await.unwrap().len(), 5);
});

both_backends!(succeed_and_claim_in_one_go, |store| async move {
    let q = SqlQueue::new(store);
    let jobs: Vec<NewJob> = (0..3).map(|i| NewJob::new("noop", json!(i))).collect();
    q.enqueue(&jobs).await.unwrap();
    node(&q, "node_a", Duration::from_secs(30)).await;
    let first = q.claim("node_a", &kinds(), &[], 2).await.unwrap();
    let mut results: Vec<_> = first
        .iter()
        .map(|j| (j.lease(), json!({"n": j.payload.clone()})))
        .collect();
    // A lease this node does not hold is not recorded.
    results.push((
        zocalo_pool::Lease {
            id: "job_other".into(),
            attempt: 1,
        },
        json!(null),
    ));
    let w = q.for_worker(2);
    let (done, next) = w
        .succeed_and_claim("node_a", &results, &kinds(), &[], 5)
        .await
        .unwrap();
    assert_eq!(done, 2);
    assert_eq!(next.len(), 1);
    for j in &first {
        let got = q.get(&j.id).await.unwrap().unwrap();
        assert_eq!(got.state, JobState::Succeeded);
        assert_eq!(got.result, Some(json!({"n": j.payload.clone()})));
    }
    // Nothing left to claim: the results are still recorded.
    let (done, none) = w
        .succeed_and_claim("node_a", &[(next[0].lease(), json!(1))], &kinds(), &[], 5)
        .await
        .unwrap();
    assert_eq!((done, none.len()), (1, 0));
    assert_eq!(q.stats().await.unwrap().succeeded, 3);
    w.close_worker_pool().await;
});

// Postgres takes keyless jobs by COPY, whose text format gives backslash, tab, newline and
// carriage return a meaning: payloads holding them must come back unchanged, and a
// batch mixing keyed and keyless jobs must answer in the order it was given.
both_backends!(
    payloads_round_trip_and_mixed_batches_keep_order,
    |store| async move {
        let q = SqlQueue::new(store);
        let odd = [
            json!({"path": "C:\\temp\\new", "tab": "a\tb", "nl": "x\ny\r\nz"}),
            json!("\\N"),
            json!("back\\slash at the end \\"),
            json!({"emoji": "🦀 ñ", "nul_escape": "\u{0001}\u{001f}", "quote": "\"q\""}),
            json!(["\\t", "\\n", "\\\\"]),
        ];
        let mut batch = Vec::new();
        for (i, p) in odd.iter().enumerate() {
            let mut j = NewJob::new("noop", p.clone());
            j.labels = vec![format!("l{i}")];
            if i % 2 == 1 {
                j.key = Some(format!("key-{i}"));
            }
            batch.push(j);
        }
        // A key taken before the batch: its place in the answer is the existing job.
        let mut taken = NewJob::new("noop", json!("first"));
        taken.key = Some("key-3".into());
        let earlier = q.enqueue(&[taken]).await.unwrap();
        let out = q.enqueue(&batch).await.unwrap();
        assert_eq!(out.len(), odd.len());
        for (i, (e, p)) in out.iter().zip(&odd).enumerate() {
            let job = q.get(&e.id).await.unwrap().unwrap();
            if i == 3 {
                assert!(!e.created);
                assert_eq!(e.id, earlier[0].id);
                assert_eq!(job.payload, json!("first"));
                continue;
            }
            assert!(e.created, "job {i}");
            assert_eq!(&job.payload, p, "job {i}");
            assert_eq!(job.labels, vec![format!("l{i}")], "job {i}");
            assert_eq!(
                job.key.as_deref(),
                (i % 2 == 1).then(|| format!("key-{i}")).as_deref()
            );
        }
        assert_eq!(q.stats().await.unwrap().queued, 5);
    }
);

// The same with many random strings over an alphabet rich in what COPY's text format escapes
// (and what JSON escapes), enqueued as one batch.
both_backends!(random_payload_strings_round_trip, |store| async move {
    use rand::{Rng, SeedableRng};
    let q = SqlQueue::new(store);
    let alphabet: Vec<char> = "\\\t\n\r\"'aZ0 ,.|{}[]:\u{0}\u{1}\u{7f}é🦀\u{2028}N"
        .chars()
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(24);
    let payloads: Vec<serde_json::Value> = (0..300)
        .map(|_| {
            let len = rng.gen_range(0..40);
            let s: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            json!({ "s": s })
        })
        .collect();
    let jobs: Vec<NewJob> = payloads
        .iter()
        .map(|p| NewJob::new("noop", p.clone()))
        .collect();
    let out = q.enqueue(&jobs).await.unwrap();
    let got: std::collections::HashMap<String, serde_json::Value> = q
        .get_many(&out.iter().map(|e| e.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.id, j.payload))
        .collect();
    for (e, p) in out.iter().zip(&payloads) {
        assert_eq!(got.get(&e.id), Some(p));
    }
});
