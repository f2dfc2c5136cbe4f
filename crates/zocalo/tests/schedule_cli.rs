//! `zocalo schedule` end to end as real processes, on SQLite and PostgreSQL: the preview
//! contract, bad input (exit 2, nothing written), an automation fired by `schedule tick` and
//! run by a real `zocalo worker`, and several tick processes at once firing each occurrence
//! exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::Path;

use serde_json::{json, Value};

use common::z;

async fn preview(home: &Path, rrule: &str, start: &str, tz: &str, limit: &str) -> common::Run {
    common::zocalo(
        home,
        &[],
        &[
            "schedule", "preview", "--rrule", rrule, "--start", start, "--tz", tz, "--limit",
            limit, "--json",
        ],
    )
    .await
}

#[tokio::test]
async fn preview_prints_utc_instants_with_rfc_5545_dst_rules() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let r = preview(
        &home,
        "FREQ=DAILY",
        "2026-03-08T08:30:00",
        "Europe/Berlin",
        "2",
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json(),
        json!(["2026-03-08T07:30:00Z", "2026-03-09T07:30:00Z"])
    );
    // 02:30 does not exist on 2026-03-29 in Berlin: 03:30 CEST that day, 02:30 after.
    let r = preview(
        &home,
        "FREQ=DAILY",
        "2026-03-28T02:30:00",
        "Europe/Berlin",
        "3",
    )
    .await;
    assert_eq!(
        r.json(),
        json!([
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-30T00:30:00Z"
        ])
    );
    // Sao Paulo skipped midnight on 2018-11-04: the occurrence is kept.
    let r = preview(
        &home,
        "FREQ=DAILY",
        "2018-11-03T00:00:00",
        "America/Sao_Paulo",
        "3",
    )
    .await;
    assert_eq!(
        r.json(),
        json!([
            "2018-11-03T03:00:00Z",
            "2018-11-04T03:00:00Z",
            "2018-11-05T02:00:00Z"
        ])
    );
    // New York's 01:30 on 2026-11-01 happens twice: the first (EDT).
    let r = preview(
        &home,
        "FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
        "2026-01-01T01:30:00",
        "America/New_York",
        "1",
    )
    .await;
    assert_eq!(r.json(), json!(["2026-11-01T05:30:00Z"]));
    // Preview touches no database: the data home was not even created.
    assert!(!home.exists());
}

#[tokio::test]
async fn preview_rejects_bad_input_with_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    for (rrule, start, tz, limit, needle) in [
        (
            "FREQ=FORTNIGHTLY",
            "2026-01-01T00:00:00",
            "UTC",
            "3",
            "FREQ=FORTNIGHTLY",
        ),
        (
            "FREQ=YEARLY;BYMONTH=13",
            "2026-01-01T00:00:00",
            "UTC",
            "3",
            "BYMONTH=13",
        ),
        (
            "FREQ=DAILY;BYHOUR=24",
            "2026-01-01T00:00:00",
            "UTC",
            "3",
            "BYHOUR=24",
        ),
        (
            "FREQ=DAILY;INTERVAL=0",
            "2026-01-01T00:00:00",
            "UTC",
            "3",
            "INTERVAL=0",
        ),
        (
            "FREQ=MONTHLY;BYMONTHDAY=0",
            "2026-01-01T00:00:00",
            "UTC",
            "3",
            "BYMONTHDAY=0",
        ),
        (
            "FREQ=DAILY;COUNT=2;UNTIL=20270101T000000Z",
            "2026-01-01T00:00:00",
            "UTC",
            "3",
            "COUNT and UNTIL",
        ),
        (
            "FREQ=DAILY",
            "2026-01-01T00:00:00",
            "Europe/Berln",
            "3",
            "did you mean Europe/Berlin",
        ),
        (
            "FREQ=DAILY",
            "2026-01-01T00:00:00",
            "Mars/Base",
            "3",
            "unknown time zone `Mars/Base`",
        ),
        (
            "FREQ=DAILY",
            "2026-01-01 09:00",
            "UTC",
            "3",
            "invalid start",
        ),
        (
            "FREQ=DAILY",
            "2026-01-01T09:00:00Z",
            "UTC",
            "3",
            "without an offset",
        ),
        ("FREQ=DAILY", "2026-01-01T00:00:00", "UTC", "0", "--limit"),
    ] {
        let r = preview(&home, rrule, start, tz, limit).await;
        assert_eq!(r.code, 2, "{rrule} {start} {tz}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains(needle), "{rrule} {tz}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
}

both!(
    add_rejects_bad_input_and_writes_nothing,
    |db, home| async move {
        let ok = [
            "schedule",
            "add",
            "standup",
            "--rrule",
            "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
            "--start",
            "2026-01-05T09:00:00",
            "--tz",
            "Europe/Berlin",
            "--ask",
            "What is on today?",
            "--json",
        ];
        let r = z(db, home, &ok).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        let a = r.json();
        assert_eq!(a["name"], "standup");
        assert_eq!(
            a["action"],
            json!({"kind": "ask", "message": "What is on today?"})
        );
        assert!(a["next_run_at"].as_str().unwrap().ends_with("Z"));

        let base =
            |name: &'static str, rrule: &'static str, start: &'static str, tz: &'static str| {
                vec![
                    "schedule", "add", name, "--rrule", rrule, "--start", start, "--tz", tz,
                    "--shell", "true",
                ]
            };
        for (args, needle) in [
            (
                base("standup", "FREQ=DAILY", "2026-01-05T09:00:00", "UTC"),
                "already exists",
            ),
            (
                base("", "FREQ=DAILY", "2026-01-05T09:00:00", "UTC"),
                "name is empty",
            ),
            (
                base("x y", "FREQ=DAILY", "2026-01-05T09:00:00", "UTC"),
                "invalid automation name",
            ),
            (
                base("x", "FREQ=DAILY;INTERVAL=0", "2026-01-05T09:00:00", "UTC"),
                "INTERVAL=0",
            ),
            (
                base("x", "FREQ=DAILY", "2026-01-05T09:00:00", "Europe/Pariss"),
                "Europe/Paris",
            ),
            (
                base("x", "FREQ=DAILY", "2026-13-05T09:00:00", "UTC"),
                "invalid start",
            ),
            (
                vec![
                    "schedule",
                    "add",
                    "x",
                    "--rrule",
                    "FREQ=DAILY",
                    "--start",
                    "2026-01-05T09:00:00",
                    "--tz",
                    "UTC",
                ],
                "--ask",
            ),
            (
                vec![
                    "schedule",
                    "add",
                    "x",
                    "--rrule",
                    "FREQ=DAILY",
                    "--start",
                    "2026-01-05T09:00:00",
                    "--tz",
                    "UTC",
                    "--shell",
                    " ",
                ],
                "command is empty",
            ),
            (
                vec![
                    "schedule",
                    "add",
                    "x",
                    "--rrule",
                    "FREQ=DAILY",
                    "--start",
                    "2026-01-05T09:00:00",
                    "--tz",
                    "UTC",
                    "--ask",
                    "hi",
                    "--conv",
                    "nope",
                ],
                "conversation id",
            ),
            (
                vec![
                    "schedule",
                    "add",
                    "x",
                    "--rrule",
                    "FREQ=DAILY",
                    "--start",
                    "2026-01-05T09:00:00",
                    "--tz",
                    "UTC",
                    "--shell",
                    "true",
                    "--misfire",
                    "sometimes",
                ],
                "unknown misfire policy `sometimes`",
            ),
            (
                vec![
                    "schedule",
                    "add",
                    "x",
                    "--rrule",
                    "FREQ=DAILY",
                    "--start",
                    "2026-01-05T09:00:00",
                    "--tz",
                    "UTC",
                    "--shell",
                    "true",
                    "--misfire",
                    "run-all",
                    "--catch-up",
                    "0",
                ],
                "--catch-up 0",
            ),
        ] {
            let r = z(db, home, &args).await;
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
            assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        }
        let list = z(db, home, &["schedule", "list", "--json"]).await.json();
        assert_eq!(list.as_array().unwrap().len(), 1);
        for cmd in [
            ["rm", "nope"],
            ["pause", "nope"],
            ["resume", "nope"],
            ["runs", "nope"],
        ] {
            let r = z(db, home, &["schedule", cmd[0], cmd[1]]).await;
            assert_eq!(r.code, 2, "{cmd:?}");
            assert!(
                r.stderr.contains("no automation named `nope`"),
                "{}",
                r.stderr
            );
        }
    }
);

both!(fired_by_tick_and_run_by_a_worker, |db, home| async move {
    let out = home.join("fired.txt");
    let cmd = format!(
        "echo \"$ZOCALO_SCHEDULE $ZOCALO_SCHEDULED_FOR\" >> {}",
        out.display()
    );
    let r = z(
        db,
        home,
        &[
            "schedule",
            "add",
            "note",
            "--rrule",
            "FREQ=DAILY",
            "--start",
            "2026-01-01T07:15:00",
            "--tz",
            "Asia/Kolkata",
            "--shell",
            &cmd,
            "--json",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let next = r.json()["next_run_at"].as_str().unwrap().to_owned();
    // 07:15 in Kolkata is 01:45Z.
    assert!(next.ends_with("T01:45:00Z"), "{next}");

    // A second before: nothing. At the instant, from two processes at once: one run.
    let before =
        chrono::DateTime::parse_from_rfc3339(&next).unwrap() - chrono::Duration::seconds(1);
    let r = z(
        db,
        home,
        &["schedule", "tick", "--now", &before.to_rfc3339(), "--json"],
    )
    .await;
    assert_eq!(r.json()["fired"], json!([]));
    let tick = ["schedule", "tick", "--now", next.as_str(), "--json"];
    let (a, b) = tokio::join!(z(db, home, &tick), z(db, home, &tick));
    let fired =
        a.json()["fired"].as_array().unwrap().len() + b.json()["fired"].as_array().unwrap().len();
    assert_eq!(fired, 1, "{} / {}", a.stdout, b.stdout);

    let runs = z(db, home, &["schedule", "runs", "note", "--json"])
        .await
        .json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["scheduled_for"], next);
    assert_eq!(runs[0]["status"], "queued");

    let w = z(db, home, &["worker", "--drain", "--json"]).await;
    assert_eq!(w.code, 0, "{}", w.stderr);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("note {next}\n")
    );
    let runs = z(db, home, &["schedule", "runs", "note", "--json"])
        .await
        .json();
    assert_eq!(runs[0]["status"], "succeeded");
    assert!(runs[0]["started_at"].is_string() && runs[0]["finished_at"].is_string());
    assert_eq!(runs[0]["output"]["exit_code"], 0);
    let human = z(db, home, &["schedule", "runs", "note"]).await;
    assert!(human.stdout.contains("succeeded"), "{}", human.stdout);

    let r = z(db, home, &["schedule", "pause", "note", "--json"]).await;
    assert_eq!(r.json()["paused"], true);
    let r = z(db, home, &["schedule", "rm", "note"]).await;
    assert_eq!(r.code, 0);
    assert_eq!(
        z(db, home, &["schedule", "list", "--json"]).await.json(),
        json!([])
    );
});

both!(
    tick_processes_at_once_fire_each_occurrence_once,
    |db, home| async move {
        const AUTOMATIONS: usize = 6;
        const MINUTES: i64 = 4;
        for i in 0..AUTOMATIONS {
            let name = format!("m{i}");
            let r = z(
                db,
                home,
                &[
                    "schedule",
                    "add",
                    &name,
                    "--rrule",
                    "FREQ=MINUTELY",
                    "--start",
                    "2026-01-01T00:00:00",
                    "--tz",
                    "UTC",
                    "--shell",
                    "true",
                ],
            )
            .await;
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
        let list = z(db, home, &["schedule", "list", "--json"]).await.json();
        // The adds may straddle a minute: start from the latest first occurrence (those due
        // earlier fire that one as their latest when it comes).
        let first = list
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                chrono::DateTime::parse_from_rfc3339(a["next_run_at"].as_str().unwrap()).unwrap()
            })
            .max()
            .unwrap();
        for m in 0..MINUTES {
            // Three processes per minute, their clocks 0, 15 and 30 s apart.
            let nows: Vec<String> = (0..3)
                .map(|k| (first + chrono::Duration::seconds(60 * m + 15 * k)).to_rfc3339())
                .collect();
            let ticks: Vec<[&str; 5]> = nows
                .iter()
                .map(|n| ["schedule", "tick", "--now", n.as_str(), "--json"])
                .collect();
            let (a, b, c) = tokio::join!(
                z(db, home, &ticks[0]),
                z(db, home, &ticks[1]),
                z(db, home, &ticks[2])
            );
            for r in [&a, &b, &c] {
                assert_eq!(r.code, 0, "{}", r.stderr);
            }
        }
        let stats: Value = z(db, home, &["pool", "stats", "--json"]).await.json();
        assert_eq!(stats["queued"], AUTOMATIONS as i64 * MINUTES);
        for i in 0..AUTOMATIONS {
            let runs = z(db, home, &["schedule", "runs", &format!("m{i}"), "--json"])
                .await
                .json();
            let mut got: Vec<String> = runs
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["scheduled_for"].as_str().unwrap().to_owned())
                .collect();
            got.sort();
            let want: Vec<String> = (0..MINUTES)
                .map(|m| {
                    (first + chrono::Duration::minutes(m))
                        .with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                })
                .collect();
            assert_eq!(got, want);
        }
    }
);
