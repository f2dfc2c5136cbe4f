//! Token usage over stored messages, on SQLite and on Postgres.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeZone, Utc};
use zocalo_core::{ConversationId, Message, Usage};
use zocalo_store::{with_pool, NewMessage, Pool, Store, UsageBy, UsageRow};
use zocalo_testkit::both_backends;

fn answer(provider: Option<&str>, model: &str, input: u64, output: u64) -> NewMessage {
    NewMessage {
        message: Message::assistant("ok"),
        model: Some(model.to_owned()),
        usage: Some(Usage {
            input_tokens: input,
            output_tokens: output,
        }),
        provider: provider.map(str::to_owned),
    }
}

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().unwrap()
}

/// Moves every message of `conv` to `when` (the store stamps them with the present).
async fn backdate(store: &Store, conv: &ConversationId, when: DateTime<Utc>) {
    let sql = "UPDATE messages SET created_at = $1 WHERE conversation_id = $2";
    match store.pool() {
        Pool::Sqlite(p) => sqlx::query(sql)
            .bind(when.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
            .bind(conv.as_str())
            .execute(p)
            .await
            .map(drop),
        Pool::Postgres(p) => sqlx::query(sql)
            .bind(when)
            .bind(conv.as_str())
            .execute(p)
            .await
            .map(drop),
    }
    .unwrap();
}

fn row(key: &str, input: u64, output: u64, calls: u64) -> UsageRow {
    UsageRow {
        key: key.into(),
        input_tokens: input,
        output_tokens: output,
        calls,
    }
}

both_backends!(groups_by_provider_model_and_day, |store| async move {
    let (a, b, c) = (
        ConversationId::new(),
        ConversationId::new(),
        ConversationId::new(),
    );
    let user = || NewMessage::plain(Message::user("q"));
    store
        .append_turn(
            &a,
            None,
            &[
                user(),
                answer(Some("openai"), "gpt-a", 100, 10),
                answer(Some("groq"), "llama", 50, 5),
            ],
        )
        .await
        .unwrap();
    store
        .append_turn(&b, None, &[user(), answer(Some("openai"), "gpt-b", 7, 3)])
        .await
        .unwrap();
    // A row from before messages recorded their provider.
    store
        .append_turn(&c, None, &[user(), answer(None, "gpt-a", 1, 1)])
        .await
        .unwrap();
    // 23:30 UTC is still the 7th, whatever the database session's zone.
    backdate(
        &store,
        &a,
        at(2026, 3, 7, 23) + chrono::Duration::minutes(30),
    )
    .await;
    backdate(&store, &b, at(2026, 3, 8, 0)).await;
    backdate(&store, &c, at(2026, 3, 9, 12)).await;

    assert_eq!(
        store.usage(UsageBy::Provider, None).await.unwrap(),
        [
            row("(unknown)", 1, 1, 1),
            row("groq", 50, 5, 1),
            row("openai", 107, 13, 2)
        ]
    );
    assert_eq!(
        store.usage(UsageBy::Model, None).await.unwrap(),
        [
            row("gpt-a", 101, 11, 2),
            row("gpt-b", 7, 3, 1),
            row("llama", 50, 5, 1)
        ]
    );
    assert_eq!(
        store.usage(UsageBy::Day, None).await.unwrap(),
        [
            row("2026-03-07", 150, 15, 2),
            row("2026-03-08", 7, 3, 1),
            row("2026-03-09", 1, 1, 1)
        ]
    );
    assert_eq!(
        store
            .usage(UsageBy::Day, Some(at(2026, 3, 8, 0)))
            .await
            .unwrap(),
        [row("2026-03-08", 7, 3, 1), row("2026-03-09", 1, 1, 1)]
    );
    assert!(store
        .usage(UsageBy::Model, Some(at(2030, 1, 1, 0)))
        .await
        .unwrap()
        .is_empty());

    // The totals budgets use.
    assert_eq!(
        store.conversation_usage(&a).await.unwrap(),
        Usage {
            input_tokens: 150,
            output_tokens: 15
        }
    );
    assert_eq!(
        store
            .conversation_usage(&ConversationId::new())
            .await
            .unwrap(),
        Usage::default()
    );
    assert_eq!(
        store.usage_since(at(2026, 3, 8, 0)).await.unwrap(),
        Usage {
            input_tokens: 8,
            output_tokens: 4
        }
    );
    let n: i64 = with_pool!(store.pool(), |p| sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages"
    )
    .fetch_one(p)
    .await)
    .unwrap();
    assert_eq!(n, 7, "user messages are stored but carry no usage");
});

#[test]
fn grouping_names_parse() {
    for by in [
        UsageBy::Provider,
        UsageBy::Model,
        UsageBy::Day,
        UsageBy::Automation,
    ] {
        assert_eq!(by.as_str().parse::<UsageBy>().unwrap(), by);
        assert_eq!(
            serde_json::to_value(by).unwrap(),
            serde_json::json!(by.as_str())
        );
    }
    let e = "week".parse::<UsageBy>().unwrap_err();
    assert!(
        e.to_string().contains("provider, model, day or automation"),
        "{e}"
    );
}

both_backends!(
    usage_by_automation_counts_the_runs_conversations,
    |store| async move {
        let user = || NewMessage::plain(Message::user("q"));
        // Two automations' conversations (their runs ask under `automation:NAME`), a chat with a
        // key of its own, and a conversation without a key.
        let (greet, _) = store
            .conversation_for_key("automation:greet")
            .await
            .unwrap();
        let (news, _) = store.conversation_for_key("automation:news").await.unwrap();
        let (chat, _) = store.conversation_for_key("telegram:42").await.unwrap();
        let plain = ConversationId::new();
        for (conv, n) in [
            (&greet, 10),
            (&greet, 20),
            (&news, 5),
            (&chat, 1000),
            (&plain, 2000),
        ] {
            store
                .append_turn(conv, None, &[user(), answer(Some("openai"), "m", n, 1)])
                .await
                .unwrap();
        }
        assert_eq!(
            store.usage(UsageBy::Automation, None).await.unwrap(),
            [row("greet", 30, 2, 2), row("news", 5, 1, 1)]
        );
        assert!(store
            .usage(UsageBy::Automation, Some(at(2099, 1, 1, 0)))
            .await
            .unwrap()
            .is_empty());
    }
);
