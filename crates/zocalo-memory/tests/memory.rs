//! Memory on both backends with the real MiniLM embedder: semantic and keyword recall, scopes,
//! chunking, update, forget (from every path), rebuild from the database, batch atomicity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use zocalo_memory::{Fusion, Memory, MemoryConfig, MemoryError, NewMemory, Retrieval};
use zocalo_testkit::both_backends;

async fn open(store: &zocalo_store::Store) -> Memory {
    Memory::open(
        store.clone(),
        Some(common::minilm().await),
        MemoryConfig::default(),
    )
    .await
    .unwrap()
}

fn ids(hits: &[zocalo_memory::Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

const FACTS: &[&str] = &[
    "I keep my bike locked in the garage behind the house.",
    "My sister Alicia lives in Lisbon and works as an architect.",
    "The quarterly report is due on the first Friday of April.",
    "Our PostgreSQL server runs version 15 on the machine called atlas.",
    "I am allergic to peanuts, so avoid recipes with them.",
];

both_backends!(recalls_by_meaning_and_by_keyword, |store| async move {
    let m = open(&store).await;
    let mut stored = Vec::new();
    for f in FACTS {
        stored.push(m.memorize(NewMemory::new("user:me", *f)).await.unwrap());
    }
    assert!(stored.iter().all(|r| r.id.starts_with("mem_")));
    // No word in common with the stored fact: only the dense half can find it.
    let dense = m
        .recall_with("where is my bicycle", &["user:me"], 5, Retrieval::Dense)
        .await
        .unwrap();
    assert_eq!(dense[0].id, stored[0].id, "{dense:?}");
    let hybrid = m
        .recall("where is my bicycle stored", &["user:me"], 3)
        .await
        .unwrap();
    assert_eq!(hybrid[0].id, stored[0].id);
    // A rare token the model knows little about: the keyword half finds it.
    let kw = m
        .recall_with("atlas", &["user:me"], 5, Retrieval::Keyword)
        .await
        .unwrap();
    assert_eq!(ids(&kw), vec![stored[3].id.as_str()]);
    let hybrid = m
        .recall("what runs on atlas?", &["user:me"], 2)
        .await
        .unwrap();
    assert_eq!(hybrid[0].id, stored[3].id);
    assert!(hybrid[0].score > 0.0);
    assert_eq!(hybrid[0].scope, "user:me");
    // Stemming: "allergies" meets "allergic"? No, but "peanut" meets "peanuts".
    let kw = m
        .recall_with("peanut", &["user:me"], 5, Retrieval::Keyword)
        .await
        .unwrap();
    assert_eq!(ids(&kw), vec![stored[4].id.as_str()]);
});

both_backends!(scopes_separate_memories, |store| async move {
    let m = open(&store).await;
    let a = m
        .memorize(NewMemory::new("user:a", "The wifi password is hunter2"))
        .await
        .unwrap();
    let b = m
        .memorize(NewMemory::new(
            "conv:conv_1",
            "The wifi password is swordfish",
        ))
        .await
        .unwrap();
    let only_a = m.recall("wifi password", &["user:a"], 10).await.unwrap();
    assert_eq!(ids(&only_a), vec![a.id.as_str()]);
    let both = m
        .recall("wifi password", &["user:a", "conv:conv_1"], 10)
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
    assert!(ids(&both).contains(&b.id.as_str()));
    assert!(m
        .recall("wifi password", &["user:nobody"], 10)
        .await
        .unwrap()
        .is_empty());
    assert!(m.recall("wifi password", &[], 10).await.unwrap().is_empty());
});

both_backends!(forget_removes_from_every_path, |store| async move {
    let m = open(&store).await;
    let keep = m
        .memorize(NewMemory::new("user:me", "Tomatoes need full sun"))
        .await
        .unwrap();
    let gone = m
        .memorize(NewMemory::new(
            "user:me",
            "The spare key is under the blue flowerpot",
        ))
        .await
        .unwrap();
    assert_eq!(
        m.recall("spare key", &["user:me"], 5).await.unwrap()[0].id,
        gone.id
    );
    m.forget(&gone.id).await.unwrap();
    for mode in [Retrieval::Hybrid, Retrieval::Keyword, Retrieval::Dense] {
        let hits = m
            .recall_with("spare key flowerpot", &["user:me"], 5, mode)
            .await
            .unwrap();
        assert!(
            !ids(&hits).contains(&gone.id.as_str()),
            "{mode:?}: {hits:?}"
        );
    }
    assert!(m.get(&gone.id).await.unwrap().is_none());
    assert_eq!(m.indexed(), (1, 1));
    let stats = m.stats().await.unwrap();
    assert_eq!((stats.memories, stats.chunks, stats.vectors), (1, 1, 1));
    // Gone from the database too: a fresh handle (indexes rebuilt from rows) cannot find it.
    let again = open(&store).await;
    let hits = again
        .recall("spare key flowerpot", &["user:me"], 5)
        .await
        .unwrap();
    assert!(!ids(&hits).contains(&gone.id.as_str()));
    assert!(matches!(
        m.forget(&gone.id).await,
        Err(MemoryError::UnknownMemory(_))
    ));
    assert!(matches!(
        m.forget("mem_doesnotexist").await,
        Err(MemoryError::UnknownMemory(ref e)) if e == "mem_doesnotexist"
    ));
    assert_eq!(
        m.get(&keep.id).await.unwrap().unwrap().text,
        "Tomatoes need full sun"
    );
});

both_backends!(indexes_are_rebuilt_from_the_database, |store| async move {
    let m = open(&store).await;
    let r = m
        .memorize(
            NewMemory::new("user:me", "Dentist appointment on 12 May at 9am")
                .with_meta("kind", "calendar")
                .with_meta("priority", 2)
                .with_source("cli"),
        )
        .await
        .unwrap();
    drop(m);
    let fresh = open(&store).await;
    let hits = fresh
        .recall("when do I see the dentist", &["user:me"], 1)
        .await
        .unwrap();
    assert_eq!(hits[0].id, r.id);
    assert_eq!(hits[0].metadata["kind"], "calendar");
    assert_eq!(hits[0].metadata["priority"], 2);
    let got = fresh.get(&r.id).await.unwrap().unwrap();
    assert_eq!(got, r);
    let stats = fresh.stats().await.unwrap();
    assert_eq!(stats.embedder.as_deref(), Some("all-minilm-l6-v2"));
    assert_eq!(stats.dim, Some(384));
    assert_eq!(stats.vectors, 1);
    assert_eq!(stats.scopes["user:me"], 1);
    // Metadata values are indexed as keywords.
    let kw = fresh
        .recall_with("calendar", &["user:me"], 1, Retrieval::Keyword)
        .await
        .unwrap();
    assert_eq!(kw[0].id, r.id);
});

both_backends!(
    long_text_is_chunked_and_each_chunk_is_searchable,
    |store| async move {
        let m = open(&store).await;
        let filler: Vec<String> = (0..400)
            .map(|i| format!("paragraph{i} talks about weather and rainfall statistics"))
            .collect();
        let text = format!(
            "{} Finally, the treasure map is hidden inside the old piano.",
            filler.join(" ")
        );
        let r = m
            .memorize(NewMemory::new("user:me", text.clone()))
            .await
            .unwrap();
        let other = m
            .memorize(NewMemory::new("user:me", "Pianos need tuning twice a year"))
            .await
            .unwrap();
        let (memories, chunks) = m.indexed();
        assert_eq!(memories, 2);
        assert!(chunks > 10, "{chunks} chunks");
        let dense = m
            .recall_with(
                "where is the treasure map",
                &["user:me"],
                2,
                Retrieval::Dense,
            )
            .await
            .unwrap();
        assert_eq!(dense[0].id, r.id, "the last chunk is embedded too");
        assert_eq!(dense[0].text, text, "results point to the whole memory");
        let hits = m.recall("treasure map", &["user:me"], 5).await.unwrap();
        assert_eq!(hits[0].id, r.id);
        assert_eq!(
            hits.iter().filter(|h| h.id == r.id).count(),
            1,
            "one hit per memory"
        );
        assert!(ids(&hits).contains(&other.id.as_str()) || hits.len() == 1);
        let stats = m.stats().await.unwrap();
        assert_eq!(stats.chunks as usize, chunks);
    }
);

both_backends!(update_reindexes, |store| async move {
    let m = open(&store).await;
    let r = m
        .memorize(NewMemory::new("user:me", "My favourite colour is green"))
        .await
        .unwrap();
    let u = m
        .update(&r.id, Some("My favourite colour is purple".into()), None)
        .await
        .unwrap();
    assert_eq!(u.id, r.id);
    assert!(u.updated_at >= r.updated_at);
    let kw = m
        .recall_with("green", &["user:me"], 5, Retrieval::Keyword)
        .await
        .unwrap();
    assert!(kw.is_empty(), "{kw:?}");
    let kw = m
        .recall_with("purple", &["user:me"], 5, Retrieval::Keyword)
        .await
        .unwrap();
    assert_eq!(ids(&kw), vec![r.id.as_str()]);
    assert_eq!(
        open(&store).await.get(&r.id).await.unwrap().unwrap().text,
        "My favourite colour is purple"
    );
    assert!(matches!(
        m.update(&r.id, Some("  ".into()), None).await,
        Err(MemoryError::EmptyText)
    ));
    assert!(matches!(
        m.update("mem_nope", Some("x".into()), None).await,
        Err(MemoryError::UnknownMemory(_))
    ));
});

both_backends!(batch_is_all_or_nothing, |store| async move {
    let m = open(&store).await;
    let bad = vec![
        NewMemory::new("user:me", "fine"),
        NewMemory::new("user:me", "   "),
    ];
    assert!(matches!(
        m.memorize_many(bad, &|_| {}).await,
        Err(MemoryError::EmptyText)
    ));
    let bad_meta =
        vec![NewMemory::new("user:me", "x").with_meta("nested", serde_json::json!({"a": 1}))];
    let err = m.memorize_many(bad_meta, &|_| {}).await.unwrap_err();
    assert!(
        err.is_usage() && err.to_string().contains("nested"),
        "{err}"
    );
    assert!(matches!(
        m.memorize(NewMemory::new("", "x")).await,
        Err(MemoryError::BadScope(_))
    ));
    assert_eq!(m.stats().await.unwrap().memories, 0);
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let items: Vec<NewMemory> = (0..70)
        .map(|i| NewMemory::new("user:me", format!("note number {i}")))
        .collect();
    let stored = m
        .memorize_many(items, &|n| {
            seen.store(n, std::sync::atomic::Ordering::SeqCst)
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 70);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 70);
    assert_eq!(m.stats().await.unwrap().memories, 70);
});

both_backends!(
    keyword_only_then_vectors_are_filled_in,
    |store| async move {
        let plain = Memory::open(store.clone(), None, MemoryConfig::default())
            .await
            .unwrap();
        let r = plain
            .memorize(NewMemory::new(
                "user:me",
                "I keep my bike locked in the garage",
            ))
            .await
            .unwrap();
        assert_eq!(
            plain.recall("bike", &["user:me"], 1).await.unwrap()[0].id,
            r.id
        );
        assert!(plain
            .recall("bicycle", &["user:me"], 1)
            .await
            .unwrap()
            .is_empty());
        let s = plain.stats().await.unwrap();
        assert_eq!((s.vectors, s.embedder), (0, None));
        // An embedder appears: the missing vectors are computed and stored at load.
        let m = Memory::open(
            store.clone(),
            Some(common::minilm().await),
            MemoryConfig::default(),
        )
        .await
        .unwrap();
        assert_eq!(m.stats().await.unwrap().vectors, 1);
        let hits = m.recall("bicycle", &["user:me"], 1).await.unwrap();
        assert_eq!(hits[0].id, r.id);
        let _ = Arc::new(m);
    }
);

both_backends!(
    context_is_embedded_with_the_text_but_not_returned,
    |store| async move {
        let config = MemoryConfig {
            embed_context: true,
            ..MemoryConfig::default()
        };
        // Two replies with the SAME text: only their context tells them apart, so a dense
        // search can only separate them if the context went into their vectors.
        let pair = |scope: &str| {
            vec![
                NewMemory::new(scope, "Yes, every single weekend!")
                    .with_meta("context", "Do you still go hiking in the mountains?"),
                NewMemory::new(scope, "Yes, every single weekend!")
                    .with_meta("context", "Do you still bake sourdough bread at home?"),
            ]
        };
        let check = |m: Arc<Memory>, scope: &'static str, stored: Vec<String>| async move {
            for (q, want) in [("trekking in the alps", 0), ("baking loaves", 1)] {
                let hits = m
                    .recall_with(q, &[scope], 2, Retrieval::Dense)
                    .await
                    .unwrap();
                assert_eq!(hits[0].id, stored[want], "{q}: {hits:?}");
                assert_eq!(hits[0].text, "Yes, every single weekend!");
                assert!(hits[0].score > hits[1].score, "{q}: {hits:?}");
            }
        };
        // Embedded when stored...
        let m = Arc::new(
            Memory::open(store.clone(), Some(common::minilm().await), config.clone())
                .await
                .unwrap(),
        );
        let stored = m.memorize_many(pair("user:a"), &|_| {}).await.unwrap();
        check(m, "user:a", stored.into_iter().map(|r| r.id).collect()).await;
        // ...and when the vectors are filled in at load (stored without an embedder).
        let plain = Memory::open(store.clone(), None, MemoryConfig::default())
            .await
            .unwrap();
        let stored = plain.memorize_many(pair("user:b"), &|_| {}).await.unwrap();
        let m = Arc::new(
            Memory::open(store.clone(), Some(common::minilm().await), config)
                .await
                .unwrap(),
        );
        check(m, "user:b", stored.into_iter().map(|r| r.id).collect()).await;
    }
);

/// Fixed 2-d vectors by text, so that cosines are known exactly.
struct Toy;

impl zocalo_core::embed::Embedder for Toy {
    fn model_id(&self) -> &str {
        "toy-2d"
    }
    fn dim(&self) -> usize {
        2
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, zocalo_core::embed::EmbedError> {
        Ok(texts
            .iter()
            .map(|t| match *t {
                "postgres tuning notes" => vec![1.0, 0.0],
                "postgres" => vec![0.0, 1.0],
                "cats and dogs" => vec![0.6, 0.8],
                _ => vec![-1.0, 0.0],
            })
            .collect())
    }
}

both_backends!(
    score_fusion_adds_scaled_bm25_and_cosine,
    |store| async move {
        let config = MemoryConfig {
            fusion: Fusion::Scores,
            keyword_weight: 1.0,
            dense_weight: 0.25,
            ..MemoryConfig::default()
        };
        let m = Memory::open(store.clone(), Some(Arc::new(Toy)), config)
            .await
            .unwrap();
        let pg = m
            .memorize(NewMemory::new("user:me", "postgres tuning notes"))
            .await
            .unwrap();
        let cats = m
            .memorize(NewMemory::new("user:me", "cats and dogs"))
            .await
            .unwrap();
        let other = m
            .memorize(NewMemory::new("user:me", "something else"))
            .await
            .unwrap();
        let hits = m.recall("postgres", &["user:me"], 5).await.unwrap();
        // The only BM25 hit scores 1 · (its BM25 / the best BM25) + 0.25 · cos 0; the others are
        // dense candidates only: 0.25 · 0.8 and 0.25 · 0 (cosines of the toy vectors).
        assert_eq!(
            ids(&hits),
            vec![pg.id.as_str(), cats.id.as_str(), other.id.as_str()]
        );
        let want = [1.0, 0.2, 0.0];
        for (h, w) in hits.iter().zip(want) {
            assert!((h.score - w).abs() < 1e-6, "{hits:?}");
        }
    }
);

both_backends!(
    recency_weighting_halves_a_score_per_half_life,
    |store| async move {
        let plain = Memory::open(store.clone(), None, MemoryConfig::default())
            .await
            .unwrap();
        let old = plain
            .memorize(NewMemory::new(
                "user:me",
                "the team meeting moved to room 4",
            ))
            .await
            .unwrap();
        let new = plain
            .memorize(NewMemory::new(
                "user:me",
                "the team meeting moved to room 7",
            ))
            .await
            .unwrap();
        // Backdate the first one by 60 days in the database (the truth the index is built from).
        let sixty_days_ms = 60 * 86_400_000i64;
        let updated = zocalo_store::with_pool!(store.pool(), |p| {
            sqlx::query("UPDATE memories SET created_at = created_at - $1 WHERE id = $2")
                .bind(sixty_days_ms)
                .bind(&old.id)
                .execute(p)
                .await
                .unwrap()
                .rows_affected()
        });
        assert_eq!(updated, 1);
        let query = "when is the team meeting";
        let unweighted = Memory::open(store.clone(), None, MemoryConfig::default())
            .await
            .unwrap();
        let hits = unweighted.recall(query, &["user:me"], 5).await.unwrap();
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert!((hits[0].score - hits[1].score).abs() < 1e-9, "{hits:?}");
        let weighted = Memory::open(
            store.clone(),
            None,
            MemoryConfig {
                recency_half_life_days: Some(30.0),
                ..MemoryConfig::default()
            },
        )
        .await
        .unwrap();
        let hits = weighted.recall(query, &["user:me"], 5).await.unwrap();
        assert_eq!(ids(&hits), vec![new.id.as_str(), old.id.as_str()]);
        // Two half-lives older: a quarter of the newer one's score.
        let ratio = hits[1].score / hits[0].score;
        assert!((ratio - 0.25).abs() < 0.01, "{hits:?}");
    }
);
