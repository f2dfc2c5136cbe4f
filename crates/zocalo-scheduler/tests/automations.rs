//! Automations on real SQLite and PostgreSQL: storing them, firing them with a clock the test
//! controls, several tickers at once, missed occurrences, and a ticker dying mid-fire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use zocalo_pool::{JobQueue, SqlQueue};
use zocalo_scheduler::{Action, Misfire, NewAutomation, Scheduler, SchedulerError};
use zocalo_store::{with_pool, Store};
use zocalo_testkit::both_backends;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn shell(name: &str, rrule: &str, start: &str, tz: &str) -> NewAutomation {
    NewAutomation::new(
        name,
        rrule,
        start,
        tz,
        Action::Shell {
            command: "true".into(),
        },
    )
}

async fn count(store: &Store, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    with_pool!(store.pool(), |p| sqlx::query_scalar::<_, i64>(&sql)
        .fetch_one(p)
        .await
        .unwrap())
}

both_backends!(add_list_pause_resume_rm, |store| async move {
    let s = Scheduler::new(store.clone());
    let now = t("2026-03-01T12:00:00Z");
    let a = s
        .add(
            shell(
                "standup",
                "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
                "2026-01-05T09:00:00",
                "Europe/Berlin",
            ),
            now,
        )
        .await
        .unwrap();
    // 2026-03-01 is a Sunday: next is Monday 09:00 CET.
    assert_eq!(a.next_run_at, Some(t("2026-03-02T08:00:00Z")));
    assert!(a.id.starts_with("sched_"));

    // Bad input: a clear error, nothing written.
    let cases: Vec<(NewAutomation, &str)> = vec![
        (
            shell("standup", "FREQ=DAILY", "2026-01-05T09:00:00", "UTC"),
            "already exists",
        ),
        (
            shell("", "FREQ=DAILY", "2026-01-05T09:00:00", "UTC"),
            "name is empty",
        ),
        (
            shell("x", "FREQ=DAILY;BYMONTH=13", "2026-01-05T09:00:00", "UTC"),
            "BYMONTH=13",
        ),
        (
            shell("x", "FREQ=DAILY", "2026-01-05T09:00:00", "Europe/Berln"),
            "Europe/Berlin",
        ),
        (
            shell("x", "FREQ=DAILY", "2026-01-05 nine", "UTC"),
            "invalid start",
        ),
    ];
    for (new, needle) in cases {
        let e = s.add(new, now).await.unwrap_err();
        assert!(e.is_usage(), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
    assert_eq!(count(&store, "sched_automations").await, 1);

    let paused = s.pause("standup", now).await.unwrap();
    assert!(paused.paused);
    // Paused: a tick a week later fires nothing.
    let r = s.tick(t("2026-03-09T12:00:00Z")).await.unwrap();
    assert!(r.fired.is_empty());
    // Resumed on Tuesday 10:00 Berlin: the next is Wednesday 09:00; the pause is skipped.
    let resumed = s
        .resume("standup", t("2026-03-10T09:00:00Z"))
        .await
        .unwrap();
    assert!(!resumed.paused);
    assert_eq!(resumed.next_run_at, Some(t("2026-03-11T08:00:00Z")));

    assert_eq!(s.list().await.unwrap().len(), 1);
    s.remove("standup").await.unwrap();
    assert!(matches!(
        s.remove("standup").await,
        Err(SchedulerError::NotFound(_))
    ));
    assert!(matches!(
        s.runs("standup", 10).await,
        Err(SchedulerError::NotFound(_))
    ));
    assert!(s.list().await.unwrap().is_empty());
});

both_backends!(
    fires_once_at_the_occurrence_across_dst,
    |store| async move {
        let s = Scheduler::new(store.clone());
        let q = SqlQueue::new(store.clone());
        // Daily 02:30 in Berlin from before the spring-forward night.
        s.add(
            shell(
                "night",
                "FREQ=DAILY",
                "2026-03-27T02:30:00",
                "Europe/Berlin",
            ),
            t("2026-03-27T00:00:00Z"),
        )
        .await
        .unwrap();
        // Not yet due.
        assert!(s
            .tick(t("2026-03-27T01:29:59Z"))
            .await
            .unwrap()
            .fired
            .is_empty());
        let r = s.tick(t("2026-03-27T01:30:00Z")).await.unwrap();
        assert_eq!(r.fired.len(), 1);
        assert_eq!(r.fired[0].occurrence, t("2026-03-27T01:30:00Z"));
        // Same instant again: nothing more.
        assert!(s
            .tick(t("2026-03-27T01:30:00Z"))
            .await
            .unwrap()
            .fired
            .is_empty());
        // 2026-03-29 02:30 does not exist: it fires at 01:30Z; the day after at 02:30 CEST.
        let r = s.tick(t("2026-03-28T01:30:00Z")).await.unwrap();
        assert_eq!(r.fired.len(), 1);
        let r = s.tick(t("2026-03-29T01:30:00Z")).await.unwrap();
        assert_eq!(r.fired[0].occurrence, t("2026-03-29T01:30:00Z"));
        let a = s.get("night").await.unwrap();
        assert_eq!(a.next_run_at, Some(t("2026-03-30T00:30:00Z")));

        let runs = s.runs("night", 10).await.unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].scheduled_for, t("2026-03-29T01:30:00Z"));
        assert_eq!(runs[0].status, "queued");
        let job = q
            .get(runs[0].job_id.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.kind, "shell");
        assert_eq!(
            job.payload["env"]["ZOCALO_SCHEDULED_FOR"],
            "2026-03-29T01:30:00Z"
        );
        assert_eq!(job.payload["env"]["ZOCALO_SCHEDULE"], "night");
        assert_eq!(q.stats().await.unwrap().total(), 3);
    }
);

both_backends!(
    missed_occurrences_fire_the_latest_once,
    |store| async move {
        let s = Scheduler::new(store.clone());
        s.add(
            shell("hourly", "FREQ=HOURLY", "2026-05-01T00:00:00", "UTC"),
            t("2026-05-01T00:00:00Z"),
        )
        .await
        .unwrap();
        // Down for three days and a bit: one run, for the latest hour that has come.
        let r = s.tick(t("2026-05-04T05:59:59Z")).await.unwrap();
        assert_eq!(r.fired.len(), 1);
        assert_eq!(r.fired[0].occurrence, t("2026-05-04T05:00:00Z"));
        assert_eq!(
            s.get("hourly").await.unwrap().next_run_at,
            Some(t("2026-05-04T06:00:00Z"))
        );
        assert_eq!(count(&store, "sched_runs").await, 1);
        assert_eq!(count(&store, "pool_jobs").await, 1);
    }
);

both_backends!(misfire_policies_skip_run_once_run_all, |store| async move {
    let s = Scheduler::new(store.clone());
    let created = t("2026-05-01T00:00:00Z");
    for (name, misfire, limit) in [
        ("skip", Misfire::Skip, 100),
        ("once", Misfire::RunOnce, 100),
        ("all", Misfire::RunAll, 100),
        ("all3", Misfire::RunAll, 3),
    ] {
        let mut new = shell(name, "FREQ=HOURLY", "2026-05-01T00:00:00", "UTC");
        new.misfire = misfire;
        new.catchup_limit = limit;
        let a = s.add(new, created).await.unwrap();
        assert_eq!(a.misfire, misfire);
    }
    let mut bad = shell("zero", "FREQ=HOURLY", "2026-05-01T00:00:00", "UTC");
    bad.catchup_limit = 0;
    assert!(s.add(bad, created).await.unwrap_err().is_usage());
    // Down from 00:00 to 10:30: eleven hourly occurrences came (00:00 .. 10:00).
    let r = s.tick(t("2026-05-01T10:30:00Z")).await.unwrap();
    let count = |n: &str| r.fired.iter().filter(|f| f.automation == n).count();
    assert_eq!(count("skip"), 0, "10:00 is 30 minutes late");
    assert_eq!(count("once"), 1);
    assert_eq!(count("all"), 11);
    assert_eq!(count("all3"), 3);
    let latest3: Vec<_> = r
        .fired
        .iter()
        .filter(|f| f.automation == "all3")
        .map(|f| f.occurrence)
        .collect();
    assert!(
        latest3.contains(&t("2026-05-01T08:00:00Z"))
            && latest3.contains(&t("2026-05-01T10:00:00Z"))
    );
    // On time, skip fires too; every policy moved on to 11:00.
    let r = s.tick(t("2026-05-01T11:00:30Z")).await.unwrap();
    assert_eq!(r.fired.len(), 4);
    assert_eq!(count_runs(&store).await, 1 + 11 + 3 + 4);
});

async fn count_runs(store: &Store) -> i64 {
    count(store, "sched_runs").await
}

both_backends!(a_finished_rule_stops, |store| async move {
    let s = Scheduler::new(store.clone());
    s.add(
        shell("twice", "FREQ=DAILY;COUNT=2", "2026-05-01T10:00:00", "UTC"),
        t("2026-04-01T00:00:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.tick(t("2026-05-01T10:00:00Z")).await.unwrap().fired.len(),
        1
    );
    assert_eq!(
        s.tick(t("2026-05-02T10:00:00Z")).await.unwrap().fired.len(),
        1
    );
    assert_eq!(s.get("twice").await.unwrap().next_run_at, None);
    assert!(s
        .tick(t("2027-01-01T00:00:00Z"))
        .await
        .unwrap()
        .fired
        .is_empty());
    assert_eq!(s.next_due().await.unwrap(), None);
});

both_backends!(
    concurrent_tickers_fire_each_occurrence_once,
    |store, db| async move {
        let s = Scheduler::new(store.clone());
        let start = t("2026-06-01T00:00:00Z");
        const AUTOMATIONS: usize = 20;
        const STEPS: i64 = 15;
        const TICKERS: usize = 4;
        for i in 0..AUTOMATIONS {
            s.add(
                shell(
                    &format!("a{i}"),
                    "FREQ=MINUTELY",
                    "2026-06-01T00:00:00",
                    "UTC",
                ),
                start,
            )
            .await
            .unwrap();
        }
        // Each minute, four tickers (separate stores = separate pools, like separate nodes) tick
        // at once, with clocks up to 30 s apart.
        let mut stores = Vec::new();
        for _ in 0..TICKERS {
            stores.push(Store::connect(&db.url()).await.unwrap());
        }
        for step in 0..STEPS {
            let mut tasks = Vec::new();
            for (k, st) in stores.iter().enumerate() {
                let sched = Scheduler::new(st.clone());
                let now = start
                    + chrono::Duration::minutes(step)
                    + chrono::Duration::seconds(10 * k as i64);
                tasks.push(tokio::spawn(async move { sched.tick(now).await.unwrap() }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        }
        for st in &stores {
            st.close().await;
        }
        let total = AUTOMATIONS as i64 * STEPS;
        assert_eq!(count(&store, "sched_runs").await, total);
        assert_eq!(count(&store, "pool_jobs").await, total);
        // Every (automation, minute) exactly once.
        let rows: Vec<(String, i64)> = with_pool!(store.pool(), |p| sqlx::query_as(
            "SELECT automation_id, occurrence FROM sched_runs"
        )
        .fetch_all(p)
        .await
        .unwrap());
        let mut per: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (a, o) in rows {
            per.entry(a).or_default().push(o);
        }
        assert_eq!(per.len(), AUTOMATIONS);
        for occ in per.values_mut() {
            occ.sort();
            let expected: Vec<i64> = (0..STEPS)
                .map(|m| (start + chrono::Duration::minutes(m)).timestamp_millis())
                .collect();
            assert_eq!(*occ, expected);
        }
        let unqueued: i64 = with_pool!(store.pool(), |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM sched_runs WHERE job_id IS NULL"
        )
        .fetch_one(p)
        .await
        .unwrap());
        assert_eq!(unqueued, 0);
    }
);

both_backends!(
    a_run_left_without_a_job_is_enqueued_once,
    |store| async move {
        let s = Scheduler::new(store.clone());
        let a = s
            .add(
                shell("crashy", "FREQ=DAILY", "2026-07-01T08:00:00", "UTC"),
                t("2026-07-01T00:00:00Z"),
            )
            .await
            .unwrap();
        // A ticker that committed the run row and died before enqueueing.
        let occ = t("2026-07-01T08:00:00Z").timestamp_millis();
        let fired_at = t("2026-07-01T08:00:01Z").timestamp_millis();
        with_pool!(store.pool(), |p| sqlx::query(
            "INSERT INTO sched_runs (id, automation_id, occurrence, job_id, created_at) \
         VALUES ('srun_dead', $1, $2, NULL, $3)"
        )
        .bind(&a.id)
        .bind(occ)
        .bind(fired_at)
        .execute(p)
        .await
        .map(drop)
        .unwrap());
        assert_eq!(s.runs("crashy", 10).await.unwrap()[0].status, "pending");
        // Within the grace period nobody touches it.
        let r = s.tick(t("2026-07-01T08:00:05Z")).await.unwrap();
        assert_eq!(r.recovered, 0);
        // The due occurrence itself is the same one: the run row exists, so no second run.
        assert!(r.fired.is_empty());
        // Later, two tickers recover it at once: one job.
        let (x, y) = (Scheduler::new(store.clone()), Scheduler::new(store.clone()));
        let later = t("2026-07-01T08:01:00Z");
        let (rx, ry) = tokio::join!(x.tick(later), y.tick(later));
        assert!(rx.unwrap().recovered + ry.unwrap().recovered >= 1);
        assert_eq!(count(&store, "pool_jobs").await, 1);
        let runs = s.runs("crashy", 10).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, "queued");
        assert_eq!(
            s.tick(t("2026-07-01T09:00:00Z")).await.unwrap().recovered,
            0
        );
    }
);

both_backends!(
    the_ticker_wakes_at_the_next_occurrence,
    |store| async move {
        let s = Scheduler::new(store.clone());
        let now = Utc::now();
        s.add(
            shell(
                "fast",
                "FREQ=SECONDLY;INTERVAL=2",
                &now.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "UTC",
            ),
            now,
        )
        .await
        .unwrap();
        // A 60 s interval: only waking at each due instant can fire twice in 4.5 s.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ticker = tokio::spawn(zocalo_scheduler::run_ticker(
            store.clone(),
            Duration::from_secs(60),
            async move {
                let _ = rx.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(4500)).await;
        tx.send(()).unwrap();
        ticker.await.unwrap().unwrap();
        let runs = s.runs("fast", 100).await.unwrap();
        assert!(runs.len() >= 2, "{} runs", runs.len());
        for r in &runs {
            let late = r.fired_at - r.scheduled_for;
            assert!(late < chrono::Duration::seconds(1), "fired {late} late");
        }
    }
);
