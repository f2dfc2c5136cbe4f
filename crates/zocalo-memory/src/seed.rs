//! The baseline the benchmark compares against: a faithful re-implementation of the seed
//! project's memory search, hashed TF-IDF in 512 dimensions compared by cosine.
//!
//! Tokens (lowercased runs of letters and digits) are hashed into 512 buckets; a bucket's
//! weight is term frequency times the corpus IDF of the tokens in it, the vector is L2
//! normalised, and the query is ranked against every document by cosine. "database" and
//! "sql" never meet, and unrelated words share buckets.

use std::collections::HashMap;

pub const DIM: usize = 512;

fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

/// FNV-1a, so buckets are the same on every run and platform.
fn bucket(token: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % DIM as u64) as usize
}

/// A fitted index: document vectors and the IDF table.
pub struct HashedTfIdf {
    idf: HashMap<String, f32>,
    default_idf: f32,
    docs: Vec<[f32; DIM]>,
}

impl HashedTfIdf {
    pub fn fit(docs: &[&str]) -> Self {
        let n = docs.len().max(1) as f32;
        let mut df: HashMap<String, usize> = HashMap::new();
        for d in docs {
            let mut seen: Vec<String> = tokens(d).collect();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                *df.entry(t).or_insert(0) += 1;
            }
        }
        let idf: HashMap<String, f32> = df
            .into_iter()
            .map(|(t, c)| (t, (n / (1.0 + c as f32)).ln() + 1.0))
            .collect();
        let default_idf = (n / 1.0).ln() + 1.0;
        let mut me = Self {
            idf,
            default_idf,
            docs: Vec::new(),
        };
        me.docs = docs.iter().map(|d| me.vector(d)).collect();
        me
    }

    pub fn vector(&self, text: &str) -> [f32; DIM] {
        let mut v = [0.0f32; DIM];
        for t in tokens(text) {
            let w = self.idf.get(&t).copied().unwrap_or(self.default_idf);
            v[bucket(&t)] += w;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    /// Indices of the best `k` documents for `query`, best first.
    pub fn search(&self, query: &str, k: usize) -> Vec<(usize, f32)> {
        let q = self.vector(query);
        let mut scored: Vec<(usize, f32)> = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, d)| (i, d.iter().zip(&q).map(|(a, b)| a * b).sum()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exact_words_but_not_synonyms() {
        let ix = HashedTfIdf::fit(&["postgres database tuning", "cats sleep a lot", "sql joins"]);
        assert_eq!(ix.search("database", 1)[0].0, 0);
        assert_eq!(ix.search("cats", 1)[0].0, 1);
        let v = ix.vector("anything at all");
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    }
}
