//! The local embedder against sentence-transformers' vectors for the same model
//! (tests/fixtures/minilm_reference.json, made by make_minilm_reference.py beside it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use zocalo_local::{Embedder, LocalEmbedder, LocalError};

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[tokio::test]
async fn vectors_agree_with_sentence_transformers() {
    let Some(dir) = common::ensure_models().await else {
        return;
    };
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    assert_eq!(reference.sentences.len(), 100);
    let emb = LocalEmbedder::load(&dir).unwrap();
    assert_eq!(emb.dim(), 384);
    assert_eq!(emb.model_id(), "all-minilm-l6-v2");
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let got = emb.embed(&texts).unwrap();
    assert_eq!(got.len(), 100);
    let mut worst = (1.0f32, 0usize);
    for (i, (g, r)) in got.iter().zip(&reference.vectors).enumerate() {
        assert_eq!(g.len(), 384);
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "vector {i} not unit length: {norm}"
        );
        let c = cosine(g, r);
        if c < worst.0 {
            worst = (c, i);
        }
    }
    eprintln!(
        "worst cosine vs sentence-transformers: {} (sentence {})",
        worst.0, worst.1
    );
    assert!(
        worst.0 >= 0.999,
        "cosine {} for {:?}",
        worst.0,
        reference.sentences[worst.1]
    );

    // Batching does not change a vector: one text alone equals it inside the batch.
    let alone = emb.embed(&[texts[3]]).unwrap();
    assert!(cosine(&alone[0], &got[3]) > 0.99999);
    assert!(emb.embed(&[]).unwrap().is_empty());
}

#[test]
fn loading_without_weights_says_to_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let e = LocalEmbedder::load(tmp.path()).unwrap_err();
    assert!(matches!(e, LocalError::Missing { .. }));
    assert!(e.to_string().contains("run `zocalo models fetch`"), "{e}");
}
