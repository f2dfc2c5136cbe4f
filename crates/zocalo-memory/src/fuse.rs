//! Reciprocal-rank fusion of ranked lists of memory ids.
//!
//! Each retriever ranks memories; a memory's fused score is the sum over lists of
//! `weight / (k + rank)` (rank from 1). Scores of different retrievers (BM25 sums, cosines)
//! live on unrelated scales, ranks do not.

use std::collections::HashMap;
use std::sync::Arc;

/// The usual constant from Cormack et al. (2009).
pub const DEFAULT_RRF_K: f64 = 60.0;

/// Fuses `lists` (each best first, with its weight) into one ranking, best first. Ties are
/// broken by the best single rank, then by id, so the order is deterministic.
pub fn rrf(lists: &[(f64, Vec<Arc<str>>)], k: f64) -> Vec<(Arc<str>, f64)> {
    let mut scores: HashMap<Arc<str>, (f64, usize)> = HashMap::new();
    for (weight, list) in lists {
        for (i, id) in list.iter().enumerate() {
            let e = scores.entry(id.clone()).or_insert((0.0, usize::MAX));
            e.0 += weight / (k + (i + 1) as f64);
            e.1 = e.1.min(i);
        }
    }
    let mut out: Vec<(Arc<str>, f64, usize)> = scores
        .into_iter()
        .map(|(id, (s, best))| (id, s, best))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    out.into_iter().map(|(id, s, _)| (id, s)).collect()
}

/// Memory ids of a chunk ranking, best first, each once (a memory ranks by its best chunk).
pub fn dedup_first<'a>(ids: impl Iterator<Item = &'a Arc<str>>) -> Vec<Arc<str>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for id in ids {
        if seen.insert(id.clone()) {
            out.push(id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<Arc<str>> {
        v.iter().map(|s| Arc::from(*s)).collect()
    }

    #[test]
    fn agreement_wins_over_one_strong_rank() {
        let fused = rrf(
            &[(1.0, ids(&["a", "b", "c"])), (1.0, ids(&["x", "b", "y"]))],
            60.0,
        );
        assert_eq!(&*fused[0].0, "b");
        assert_eq!(fused.len(), 5);
        let weighted = rrf(&[(1.0, ids(&["a"])), (3.0, ids(&["z"]))], 60.0);
        assert_eq!(&*weighted[0].0, "z");
    }

    #[test]
    fn dedup_keeps_best_rank() {
        let v = ids(&["a", "b", "a", "c", "b"]);
        assert_eq!(dedup_first(v.iter()), ids(&["a", "b", "c"]));
    }
}
