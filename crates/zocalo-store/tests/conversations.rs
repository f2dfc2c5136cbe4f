//! Conversations and messages, on SQLite and on Postgres.

use std::collections::BTreeSet;

use serde_json::json;
use zocalo_core::{ConversationId, Message, Role, ToolCall, Usage};
use zocalo_store::{ConversationSettings, NewMessage, Store, StoreError};
use zocalo_testkit::both_backends;

fn user(text: &str) -> NewMessage {
    NewMessage::plain(Message::user(text))
}

fn assistant(text: &str, model: &str, input: u64, output: u64) -> NewMessage {
    NewMessage {
        message: Message::assistant(text),
        model: Some(model.to_owned()),
        usage: Some(Usage {
            input_tokens: input,
            output_tokens: output,
        }),
        provider: Some("openai".to_owned()),
    }
}

/// A full tool round trip: the user asks, the assistant calls two tools, one fails, the
/// assistant answers.
fn tool_turn() -> Vec<NewMessage> {
    let calls = vec![
        ToolCall {
            id: "call_1".into(),
            name: "current_time".into(),
            arguments: json!({"timezone": "Europe/Madrid", "nested": {"n": [1, 2.5, null, true]}}),
        },
        ToolCall {
            id: "toolu_2".into(),
            name: "lookup".into(),
            arguments: json!({}),
        },
    ];
    vec![
        user("what time is it in Madrid? ünïcödé 🦀 'quotes' \"double\""),
        NewMessage {
            message: Message {
                role: Role::Assistant,
                content: String::new(),
                tool_calls: calls,
                tool_call_id: None,
                is_error: false,
            },
            model: Some("gpt-4o-mini".into()),
            usage: Some(Usage {
                input_tokens: 120,
                output_tokens: 30,
            }),
            provider: Some("groq".into()),
        },
        NewMessage::plain(Message::tool_result("call_1", "07:30 CET", false)),
        NewMessage::plain(Message::tool_result("toolu_2", "no such thing", true)),
        assistant("It is 07:30 in Madrid.", "gpt-4o-mini", 200, 12),
    ]
}

async fn count_rows(store: &Store, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    zocalo_store::with_pool!(store.pool(), |p| sqlx::query_scalar::<_, i64>(&sql)
        .fetch_one(p)
        .await)
    .unwrap_or_else(|e| panic!("count {table}: {e}"))
}

both_backends!(append_turn_round_trips_every_field, |store| async move {
    let id = ConversationId::new();
    let turn = tool_turn();
    let returned = store
        .append_turn(&id, Some("Madrid time"), &turn)
        .await
        .unwrap();
    assert_eq!(returned.len(), turn.len());

    let read = store.messages(&id).await.unwrap();
    assert_eq!(read, returned, "what append_turn returns is what is stored");
    for (i, (stored, sent)) in read.iter().zip(&turn).enumerate() {
        assert_eq!(stored.seq, i as i64 + 1);
        assert_eq!(stored.conversation_id, id);
        assert_eq!(stored.message, sent.message);
        assert_eq!(stored.model, sent.model);
        assert_eq!(stored.provider, sent.provider);
        assert_eq!(stored.usage, sent.usage);
        assert!(stored.id.as_str().starts_with("msg_"));
    }
    let ids: BTreeSet<_> = read.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), read.len(), "message ids are unique");

    let conv = store.get_conversation(&id).await.unwrap().unwrap();
    assert_eq!(conv.id, id);
    assert_eq!(conv.title.as_deref(), Some("Madrid time"));
    assert_eq!(conv.message_count, 5);
    assert_eq!(conv.created_at, conv.updated_at);
});

both_backends!(append_continues_seq_and_keeps_title, |store| async move {
    let id = ConversationId::new();
    store
        .append_turn(
            &id,
            Some("first"),
            &[user("hi"), assistant("hello", "m", 1, 1)],
        )
        .await
        .unwrap();
    let created = store.get_conversation(&id).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let second = store
        .append_turn(
            &id,
            Some("ignored"),
            &[user("again"), assistant("yes", "m", 2, 2)],
        )
        .await
        .unwrap();
    assert_eq!(second.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4]);

    let all = store.messages(&id).await.unwrap();
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(
        all.iter()
            .map(|m| m.message.content.as_str())
            .collect::<Vec<_>>(),
        ["hi", "hello", "again", "yes"]
    );

    let conv = store.get_conversation(&id).await.unwrap().unwrap();
    assert_eq!(
        conv.title.as_deref(),
        Some("first"),
        "an existing title is kept"
    );
    assert_eq!(conv.message_count, 4);
    assert_eq!(conv.created_at, created.created_at);
    assert!(conv.updated_at > created.updated_at, "updated_at moves on");
});

both_backends!(
    untitled_conversation_gets_a_title_later,
    |store| async move {
        let id = ConversationId::new();
        store.append_turn(&id, None, &[user("a")]).await.unwrap();
        assert_eq!(
            store.get_conversation(&id).await.unwrap().unwrap().title,
            None
        );
        store
            .append_turn(&id, Some("named"), &[user("b")])
            .await
            .unwrap();
        let conv = store.get_conversation(&id).await.unwrap().unwrap();
        assert_eq!(conv.title.as_deref(), Some("named"));
    }
);

both_backends!(
    recent_messages_are_the_last_n_in_order,
    |store| async move {
        let id = ConversationId::new();
        for i in 0..5 {
            store
                .append_turn(
                    &id,
                    None,
                    &[
                        user(&format!("q{i}")),
                        assistant(&format!("a{i}"), "m", 1, 1),
                    ],
                )
                .await
                .unwrap();
        }
        let last3 = store.recent_messages(&id, 3).await.unwrap();
        assert_eq!(
            last3
                .iter()
                .map(|m| m.message.content.as_str())
                .collect::<Vec<_>>(),
            ["a3", "q4", "a4"]
        );
        assert_eq!(last3.iter().map(|m| m.seq).collect::<Vec<_>>(), [8, 9, 10]);
        assert_eq!(store.recent_messages(&id, 100).await.unwrap().len(), 10);
        assert!(store.recent_messages(&id, 0).await.unwrap().is_empty());
        assert!(store.recent_messages(&id, -1).await.unwrap().is_empty());
        assert!(store
            .recent_messages(&ConversationId::new(), 3)
            .await
            .unwrap()
            .is_empty());
    }
);

both_backends!(
    list_conversations_newest_first_with_counts,
    |store| async move {
        let a = ConversationId::new();
        let b = ConversationId::new();
        let c = ConversationId::new();
        store
            .append_turn(&a, Some("a"), &[user("1")])
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .append_turn(&b, Some("b"), &[user("1"), user("2")])
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store.append_turn(&c, None, &[]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        // Touching `a` again moves it to the front.
        store
            .append_turn(&a, None, &[user("2"), user("3")])
            .await
            .unwrap();

        let list = store.list_conversations(10).await.unwrap();
        let summary: Vec<_> = list
            .iter()
            .map(|c| (c.id.clone(), c.message_count))
            .collect();
        assert_eq!(summary, [(a.clone(), 3), (c.clone(), 0), (b.clone(), 2)]);
        assert_eq!(list[0].title.as_deref(), Some("a"));

        let top2 = store.list_conversations(2).await.unwrap();
        assert_eq!(
            top2.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            [a, c]
        );
        assert!(store.list_conversations(0).await.unwrap().is_empty());
    }
);

both_backends!(unknown_conversation_is_none, |store| async move {
    let id = ConversationId::new();
    assert!(store.get_conversation(&id).await.unwrap().is_none());
    assert!(store.messages(&id).await.unwrap().is_empty());
    assert!(!store.delete_conversation(&id).await.unwrap());
});

both_backends!(delete_cascades_to_messages, |store| async move {
    let keep = ConversationId::new();
    let gone = ConversationId::new();
    store.append_turn(&keep, None, &tool_turn()).await.unwrap();
    store.append_turn(&gone, None, &tool_turn()).await.unwrap();
    assert!(store.delete_conversation(&gone).await.unwrap());
    assert!(store.get_conversation(&gone).await.unwrap().is_none());
    assert_eq!(count_rows(&store, "messages").await, 5);
    assert_eq!(store.messages(&keep).await.unwrap().len(), 5);
});

both_backends!(failed_append_leaves_nothing_behind, |store| async move {
    // A tool result without the id of the call it answers violates a CHECK constraint, and
    // it is the third row of the turn: the first two must be rolled back with it.
    let bad_tool = NewMessage::plain(Message {
        role: Role::Tool,
        content: "orphan".into(),
        tool_calls: Vec::new(),
        tool_call_id: None,
        is_error: false,
    });
    let new_id = ConversationId::new();
    let err = store
        .append_turn(
            &new_id,
            Some("never"),
            &[user("q"), assistant("a", "m", 1, 1), bad_tool.clone()],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Db(_)), "{err:?}");
    assert!(store.get_conversation(&new_id).await.unwrap().is_none());
    assert_eq!(count_rows(&store, "conversations").await, 0);
    assert_eq!(count_rows(&store, "messages").await, 0);

    // On an existing conversation: no new messages, no title, updated_at unchanged.
    let id = ConversationId::new();
    store
        .append_turn(&id, None, &[user("first")])
        .await
        .unwrap();
    let before = store.get_conversation(&id).await.unwrap().unwrap();
    store
        .append_turn(&id, Some("never"), &[user("second"), bad_tool])
        .await
        .unwrap_err();
    let after = store.get_conversation(&id).await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(store.messages(&id).await.unwrap().len(), 1);

    // And the store still works: the next append continues at seq 2.
    let next = store
        .append_turn(&id, None, &[user("third")])
        .await
        .unwrap();
    assert_eq!(next[0].seq, 2);
});

both_backends!(
    concurrent_appends_get_distinct_consecutive_seqs,
    |store| async move {
        const TURNS: usize = 12;
        let id = ConversationId::new();
        let tasks: Vec<_> = (0..TURNS)
            .map(|i| {
                let store = store.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    store
                        .append_turn(
                            &id,
                            Some("race"),
                            &[
                                user(&format!("q{i}")),
                                assistant(&format!("a{i}"), "m", 1, 1),
                            ],
                        )
                        .await
                })
            })
            .collect();
        // All are spawned (and racing) before the first is awaited.
        for task in tasks {
            task.await.unwrap().unwrap();
        }

        let all = store.messages(&id).await.unwrap();
        assert_eq!(
            all.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=2 * TURNS as i64).collect::<Vec<_>>()
        );
        // Each turn's two messages are adjacent: q{i} directly followed by a{i}.
        for pair in all.chunks(2) {
            let q = pair[0].message.content.strip_prefix('q').unwrap();
            let a = pair[1].message.content.strip_prefix('a').unwrap();
            assert_eq!(q, a, "turns interleaved: {pair:?}");
        }
        let conv = store.get_conversation(&id).await.unwrap().unwrap();
        assert_eq!(conv.message_count, 2 * TURNS as i64);
    }
);

both_backends!(
    empty_content_and_large_text_round_trip,
    |store| async move {
        let id = ConversationId::new();
        let big = "x".repeat(200_000);
        store
            .append_turn(&id, None, &[user(""), user(&big), assistant("", "m", 0, 0)])
            .await
            .unwrap();
        let read = store.messages(&id).await.unwrap();
        assert_eq!(read[0].message.content, "");
        assert_eq!(read[1].message.content, big);
        assert_eq!(
            read[2].usage,
            Some(Usage {
                input_tokens: 0,
                output_tokens: 0
            })
        );
    }
);

both_backends!(
    nul_characters_are_stored_as_replacement,
    |store| async move {
        let id = ConversationId::new();
        let mut call = Message::assistant("a\0b");
        call.tool_calls.push(ToolCall {
            id: "c\0-1".into(),
            name: "t".into(),
            arguments: json!({"k\0": ["v\0", 1]}),
        });
        let turn = [
            user("x\0y"),
            NewMessage::plain(call),
            NewMessage::plain(Message::tool_result("c\0-1", "out\0", false)),
        ];
        store.append_turn(&id, None, &turn).await.unwrap();
        let read = store.messages(&id).await.unwrap();
        assert_eq!(read[0].message.content, "x\u{FFFD}y");
        assert_eq!(read[1].message.content, "a\u{FFFD}b");
        assert_eq!(read[1].message.tool_calls[0].id, "c\u{FFFD}-1");
        assert_eq!(
            read[1].message.tool_calls[0].arguments,
            json!({"k\u{FFFD}": ["v\u{FFFD}", 1]})
        );
        assert_eq!(read[2].message.tool_call_id.as_deref(), Some("c\u{FFFD}-1"));
        assert_eq!(read[2].message.content, "out\u{FFFD}");
    }
);

both_backends!(
    summaries_are_kept_with_the_conversation,
    |store| async move {
        let id = ConversationId::new();
        store
            .append_turn(&id, None, &[user("hi"), assistant("hello", "m", 1, 1)])
            .await
            .unwrap();
        assert_eq!(store.latest_summary(&id).await.unwrap(), None);
        let first = store
            .save_summary(&id, 2, "  The user said hi.\n", Some("m"))
            .await
            .unwrap();
        assert_eq!(first.text, "The user said hi.");
        store
            .save_summary(&id, 6, "Later: \0greetings.", None)
            .await
            .unwrap();
        let latest = store.latest_summary(&id).await.unwrap().unwrap();
        assert_eq!(latest.through_seq, 6);
        assert_eq!(latest.text, "Later: \u{FFFD}greetings.");
        assert_eq!(latest.model, None);
        let all = store.summaries(&id).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], first, "read back exactly as written");
        // Summarising the same range again replaces that summary.
        store.save_summary(&id, 2, "Again.", None).await.unwrap();
        assert_eq!(store.summaries(&id).await.unwrap()[0].text, "Again.");
        // Nothing to summarise, a summary of no messages, an unknown conversation: refused.
        assert!(store.save_summary(&id, 3, " \n", None).await.is_err());
        assert!(store.save_summary(&id, 0, "x", None).await.is_err());
        let other = ConversationId::new();
        assert!(store.save_summary(&other, 1, "x", None).await.is_err());
        // The messages are untouched; deleting the conversation deletes its summaries.
        assert_eq!(store.messages(&id).await.unwrap().len(), 2);
        assert!(store.delete_conversation(&id).await.unwrap());
        assert!(store.summaries(&id).await.unwrap().is_empty());
        assert_eq!(count_rows(&store, "conversation_summaries").await, 0);
    }
);

both_backends!(
    conversation_keys_map_to_one_conversation,
    |store| async move {
        let (a, created) = store.conversation_for_key("telegram:42").await.unwrap();
        assert!(created);
        let (again, created) = store.conversation_for_key("telegram:42").await.unwrap();
        assert!(!created);
        assert_eq!(a, again);
        let (other, _) = store.conversation_for_key("discord:42").await.unwrap();
        assert_ne!(a, other);
        // Created on first use, titled with the key, empty until a turn is appended.
        let conv = store.get_conversation(&a).await.unwrap().unwrap();
        assert_eq!(conv.title.as_deref(), Some("telegram:42"));
        assert_eq!(conv.message_count, 0);
        assert_eq!(store.conversation_of_key("nobody:1").await.unwrap(), None);

        // Deleting the conversation frees the key: the next use starts a new one.
        assert!(store.delete_conversation(&a).await.unwrap());
        assert_eq!(count_rows(&store, "conversation_keys").await, 1);
        let (fresh, created) = store.conversation_for_key("telegram:42").await.unwrap();
        assert!(created);
        assert_ne!(fresh, a);
    }
);

both_backends!(concurrent_first_uses_of_a_key_agree, |store| async move {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.conversation_for_key("web:7").await.unwrap()
        }));
    }
    let mut ids = BTreeSet::new();
    let mut creators = 0;
    for t in tasks {
        let (id, created) = t.await.unwrap();
        ids.insert(id);
        creators += usize::from(created);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(creators, 1);
    // The losers' conversations were rolled back, not left behind.
    assert_eq!(count_rows(&store, "conversations").await, 1);
});

both_backends!(bad_conversation_keys_are_usage_errors, |store| async move {
    let long = "k".repeat(zocalo_store::conversations::MAX_CONVERSATION_KEY + 1);
    for bad in ["", "   ", "a\nb", "tab\there", long.as_str()] {
        let e = store.conversation_for_key(bad).await.unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{bad:?}: {e:?}");
        assert!(e.is_usage());
    }
    assert_eq!(count_rows(&store, "conversations").await, 0);
});

both_backends!(
    settings_are_kept_and_a_key_can_be_released,
    |store| async move {
        let (id, _) = store.conversation_for_key("telegram:7").await.unwrap();
        assert_eq!(
            store.conversation_settings(&id).await.unwrap(),
            ConversationSettings::default()
        );
        store
            .set_conversation_persona(&id, Some("coder"))
            .await
            .unwrap();
        store
            .set_conversation_model(&id, Some("fake:small"))
            .await
            .unwrap();
        store
            .set_conversation_persona(&id, Some("writer"))
            .await
            .unwrap();
        let s = store.conversation_settings(&id).await.unwrap();
        assert_eq!(s.persona.as_deref(), Some("writer"));
        assert_eq!(
            s.model.as_deref(),
            Some("fake:small"),
            "setting the persona kept the model"
        );
        // A channel's /new: the key lets go, the next use is another conversation, and the old one
        // (with its settings) stays.
        assert!(store.release_conversation_key("telegram:7").await.unwrap());
        assert!(!store.release_conversation_key("telegram:7").await.unwrap());
        let (again, created) = store.conversation_for_key("telegram:7").await.unwrap();
        assert!(created);
        assert_ne!(again, id);
        assert_eq!(
            store.conversation_settings(&again).await.unwrap(),
            ConversationSettings::default()
        );
        assert!(store.get_conversation(&id).await.unwrap().is_some());
        // Deleting a conversation deletes its settings.
        assert!(store.delete_conversation(&id).await.unwrap());
        assert_eq!(
            store.conversation_settings(&id).await.unwrap(),
            ConversationSettings::default()
        );
    }
);

both_backends!(
    append_turns_writes_many_conversations_in_one_transaction,
    |store| async move {
        use zocalo_store::PreparedTurn;
        let old = ConversationId::new();
        store
            .append_turn(
                &old,
                Some("old"),
                &[user("first"), assistant("one", "m", 1, 1)],
            )
            .await
            .unwrap();
        let before = store.get_conversation(&old).await.unwrap().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;

        // New conversations, more turns on the existing one, and one conversation named twice
        // in the same call.
        let (a, b) = (ConversationId::new(), ConversationId::new());
        let prepare = |id: &ConversationId, title: Option<&str>, turn: &[NewMessage]| {
            PreparedTurn::new(id.clone(), title.map(str::to_owned), turn).unwrap()
        };
        let mut turns = vec![
            prepare(&a, Some("a"), &tool_turn()),
            prepare(&old, Some("ignored"), &[user("second")]),
            prepare(&b, None, &[user("b1"), assistant("b2", "m", 3, 4)]),
            prepare(&a, Some("not a"), &[user("a again")]),
            prepare(&old, None, &[user("third"), assistant("three", "m", 5, 6)]),
        ];
        store.append_turns(&mut turns).await.unwrap();

        let seqs = |id: ConversationId| {
            let store = store.clone();
            async move {
                let m = store.messages(&id).await.unwrap();
                m.iter()
                    .map(|m| (m.seq, m.message.content.clone()))
                    .collect::<Vec<_>>()
            }
        };
        let a_msgs = store.messages(&a).await.unwrap();
        assert_eq!(a_msgs.len(), 6);
        assert_eq!(&a_msgs[..5], turns[0].messages(), "stored as returned");
        assert_eq!(a_msgs[5].seq, 6);
        assert_eq!(a_msgs[5].message.content, "a again");
        assert_eq!(
            seqs(b.clone()).await,
            [(1, "b1".to_owned()), (2, "b2".to_owned())]
        );
        assert_eq!(
            seqs(old.clone()).await,
            [
                (1, "first".to_owned()),
                (2, "one".to_owned()),
                (3, "second".to_owned()),
                (4, "third".to_owned()),
                (5, "three".to_owned())
            ]
        );
        let conv = |id: ConversationId| {
            let store = store.clone();
            async move { store.get_conversation(&id).await.unwrap().unwrap() }
        };
        assert_eq!(conv(a.clone()).await.title.as_deref(), Some("a"));
        assert_eq!(conv(b.clone()).await.title, None);
        let after = conv(old.clone()).await;
        assert_eq!(after.title.as_deref(), Some("old"));
        assert_eq!(after.created_at, before.created_at);
        assert!(after.updated_at > before.updated_at);
        let b_answer = &store.messages(&b).await.unwrap()[1];
        assert_eq!(
            b_answer.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((3, 4))
        );
        assert_eq!(b_answer.provider.as_deref(), Some("openai"));

        // One bad turn and the whole call is rolled back: nothing of the others either.
        let bad_tool = NewMessage::plain(Message {
            role: Role::Tool,
            content: "orphan".into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        });
        let c = ConversationId::new();
        let mut turns = vec![
            prepare(&c, Some("c"), &[user("c1")]),
            prepare(&old, None, &[user("fourth")]),
            prepare(&ConversationId::new(), None, &[user("q"), bad_tool]),
        ];
        let err = store.append_turns(&mut turns).await.unwrap_err();
        assert!(matches!(err, StoreError::Db(_)), "{err:?}");
        assert!(store.get_conversation(&c).await.unwrap().is_none());
        assert_eq!(store.messages(&old).await.unwrap().len(), 5);
        assert_eq!(count_rows(&store, "conversations").await, 3);
    }
);
