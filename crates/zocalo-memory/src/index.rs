//! The in-process indexes, derived from the database: a BM25 inverted index and a flat matrix
//! of unit vectors searched by brute force, over chunks ("slots"). Both are rebuilt from the
//! rows at start-up and changed in step with every write; a forgotten memory's slots are
//! emptied in both (postings removed, vector zeroed) and reused.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::MemoryRecord;
use crate::simd;

/// BM25 parameters (the usual Lucene defaults).
const K1: f32 = 1.2;
const B: f32 = 0.75;
const DEAD: u32 = u32::MAX;

/// One chunk to index.
pub(crate) struct ChunkEntry {
    /// Index terms (see [`crate::text::terms`]), repeats kept.
    pub terms: Vec<String>,
    /// Unit vector of the index's dimension, if there is one.
    pub vector: Option<Vec<f32>>,
    /// The embedder of a vector stored for this chunk that this process cannot use (made by
    /// another embedder): counted, so that a search refuses to mix vector spaces.
    pub foreign: Option<Arc<str>>,
    /// The embedder the database row records for this chunk's stored vector (None: no
    /// vector stored), so that a sync notices a row whose vector was replaced.
    pub stored: Option<Arc<str>>,
}

#[derive(Default)]
pub(crate) struct Index {
    dim: usize,
    // Per slot (parallel arrays, so the vector scan walks contiguous memory).
    slot_scope: Vec<u32>,
    slot_memory: Vec<Option<Arc<str>>>,
    slot_len: Vec<u32>,
    slot_terms: Vec<Vec<u32>>,
    slot_has_vec: Vec<bool>,
    slot_foreign: Vec<Option<Arc<str>>>,
    slot_stored: Vec<Option<Arc<str>>>,
    /// Chunks per other embedder whose vectors the indexes leave out (see
    /// [`ChunkEntry::foreign`]).
    foreign: std::collections::BTreeMap<Arc<str>, usize>,
    vectors: Vec<f32>,
    // The same vectors quantised to i8 (x * scale, scale = 127 / max |x|): a scan reads a
    // quarter of the bytes, and the best candidates are rescored with the f32 vectors.
    qvectors: Vec<i8>,
    qscale: Vec<f32>,
    free: Vec<u32>,
    live_slots: usize,
    total_len: u64,
    // Memories and their slots.
    memories: HashMap<Arc<str>, (MemoryRecord, Vec<u32>)>,
    scopes: HashMap<String, u32>,
    // Terms. A term whose last posting goes is forgotten and its id reused: without that,
    // adding and forgetting texts with ever new words (numbers, ids) grew the vocabulary,
    // and the process, without bound (the soak of issue 25 found it).
    term_ids: HashMap<Arc<str>, u32>,
    term_names: Vec<Option<Arc<str>>>,
    free_terms: Vec<u32>,
    postings: Vec<Vec<(u32, u32)>>,
}

impl Index {
    /// An empty index for vectors of `dim` floats (0: keywords only).
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.memories.len()
    }

    pub fn chunk_count(&self) -> usize {
        self.live_slots
    }

    pub fn get(&self, id: &str) -> Option<&MemoryRecord> {
        self.memories.get(id).map(|(r, _)| r)
    }

    pub fn ids(&self) -> Vec<String> {
        self.memories.keys().map(|id| id.to_string()).collect()
    }

    /// Chunks whose stored vector was made by another embedder, per embedder id.
    pub fn foreign(&self) -> &std::collections::BTreeMap<Arc<str>, usize> {
        &self.foreign
    }

    /// Per chunk of memory `id`, the embedder its row records for the stored vector.
    pub fn stored_models(&self, id: &str) -> Option<Vec<Option<Arc<str>>>> {
        self.memories.get(id).map(|(_, slots)| {
            slots
                .iter()
                .map(|s| self.slot_stored[*s as usize].clone())
                .collect()
        })
    }

    /// The vector length (0: not known yet, or keywords only).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Vectors of an embedder whose dimension was not known when the index was made: the
    /// first vector sets it.
    fn adopt_dim(&mut self, dim: usize) {
        if self.dim == 0 && dim > 0 {
            self.dim = dim;
            let slots = self.slot_scope.len();
            self.vectors = vec![0.0; slots * dim];
            self.qvectors = vec![0; slots * dim];
        }
    }

    pub fn scope_id(&self, scope: &str) -> Option<u32> {
        self.scopes.get(scope).copied()
    }

    /// Adds (or replaces) a memory with its chunks.
    pub fn insert(&mut self, record: MemoryRecord, chunks: Vec<ChunkEntry>) {
        self.remove(&record.id);
        let id: Arc<str> = Arc::from(record.id.as_str());
        let next_scope = self.scopes.len() as u32;
        let scope = *self
            .scopes
            .entry(record.scope.clone())
            .or_insert(next_scope);
        let mut slots = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let slot = self.alloc_slot();
            let s = slot as usize;
            self.slot_scope[s] = scope;
            self.slot_memory[s] = Some(id.clone());
            self.slot_len[s] = chunk.terms.len() as u32;
            self.total_len += chunk.terms.len() as u64;
            let mut tf: HashMap<u32, u32> = HashMap::new();
            for t in chunk.terms {
                let tid = self.term_id(t);
                *tf.entry(tid).or_insert(0) += 1;
            }
            let mut distinct = Vec::with_capacity(tf.len());
            for (tid, n) in tf {
                self.postings[tid as usize].push((slot, n));
                distinct.push(tid);
            }
            self.slot_terms[s] = distinct;
            self.slot_stored[s] = chunk.stored;
            if let Some(model) = chunk.foreign {
                *self.foreign.entry(model.clone()).or_insert(0) += 1;
                self.slot_foreign[s] = Some(model);
            }
            if let Some(v) = &chunk.vector {
                self.adopt_dim(v.len());
            }
            match chunk.vector {
                Some(v) if self.dim > 0 && v.len() == self.dim => {
                    self.vectors[s * self.dim..(s + 1) * self.dim].copy_from_slice(&v);
                    self.qscale[s] =
                        quantise(&v, &mut self.qvectors[s * self.dim..(s + 1) * self.dim]);
                    self.slot_has_vec[s] = true;
                }
                _ => self.slot_has_vec[s] = false,
            }
            self.live_slots += 1;
            slots.push(slot);
        }
        self.memories.insert(id, (record, slots));
    }

    /// The id of a term, given a free or new one if it has none.
    fn term_id(&mut self, term: String) -> u32 {
        if let Some(&tid) = self.term_ids.get(term.as_str()) {
            return tid;
        }
        let name: Arc<str> = term.into();
        let tid = match self.free_terms.pop() {
            Some(tid) => {
                self.term_names[tid as usize] = Some(name.clone());
                tid
            }
            None => {
                self.postings.push(Vec::new());
                self.term_names.push(Some(name.clone()));
                (self.postings.len() - 1) as u32
            }
        };
        self.term_ids.insert(name, tid);
        tid
    }

    /// Terms known (with at least one posting).
    #[cfg(test)]
    fn term_count(&self) -> usize {
        self.term_ids.len()
    }

    /// Removes a memory from every structure. Returns whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some((_, slots)) = self.memories.remove(id) else {
            return false;
        };
        for slot in slots {
            let s = slot as usize;
            for tid in std::mem::take(&mut self.slot_terms[s]) {
                let postings = &mut self.postings[tid as usize];
                postings.retain(|(sl, _)| *sl != slot);
                // Freed once, even when several chunks of the memory had the term.
                if postings.is_empty() {
                    *postings = Vec::new();
                    if let Some(name) = self.term_names[tid as usize].take() {
                        self.term_ids.remove(&name);
                        self.free_terms.push(tid);
                    }
                }
            }
            self.total_len -= u64::from(self.slot_len[s]);
            self.slot_len[s] = 0;
            self.slot_scope[s] = DEAD;
            self.slot_memory[s] = None;
            self.slot_stored[s] = None;
            if let Some(model) = self.slot_foreign[s].take() {
                if let Some(n) = self.foreign.get_mut(&model) {
                    *n -= 1;
                    if *n == 0 {
                        self.foreign.remove(&model);
                    }
                }
            }
            if self.slot_has_vec[s] {
                self.vectors[s * self.dim..(s + 1) * self.dim].fill(0.0);
                self.qvectors[s * self.dim..(s + 1) * self.dim].fill(0);
                self.qscale[s] = 0.0;
                self.slot_has_vec[s] = false;
            }
            self.live_slots -= 1;
            self.free.push(slot);
        }
        true
    }

    fn alloc_slot(&mut self) -> u32 {
        if let Some(s) = self.free.pop() {
            return s;
        }
        let s = self.slot_scope.len() as u32;
        self.slot_scope.push(DEAD);
        self.slot_memory.push(None);
        self.slot_len.push(0);
        self.slot_terms.push(Vec::new());
        self.slot_has_vec.push(false);
        self.slot_foreign.push(None);
        self.slot_stored.push(None);
        self.vectors.resize(self.vectors.len() + self.dim, 0.0);
        self.qvectors.resize(self.qvectors.len() + self.dim, 0);
        self.qscale.push(0.0);
        s
    }

    /// The memory a slot belongs to (None for a free slot).
    pub fn memory_of(&self, slot: u32) -> Option<&Arc<str>> {
        self.slot_memory.get(slot as usize).and_then(Option::as_ref)
    }

    /// The best cosine of `query` with the chunks of memory `id` that have vectors.
    pub fn cosine(&self, id: &str, query: &[f32]) -> Option<f32> {
        let (_, slots) = self.memories.get(id)?;
        if self.dim == 0 || query.len() != self.dim {
            return None;
        }
        slots
            .iter()
            .map(|s| *s as usize)
            .filter(|s| self.slot_has_vec[*s])
            .map(|s| dot(query, &self.vectors[s * self.dim..(s + 1) * self.dim]))
            .reduce(f32::max)
    }

    /// BM25 over chunks in `scopes`: the best `n` slots, best first.
    pub fn search_bm25(&self, query_terms: &[String], scopes: &[u32], n: usize) -> Vec<(u32, f32)> {
        if self.live_slots == 0 || scopes.is_empty() {
            return Vec::new();
        }
        let mut distinct: Vec<u32> = query_terms
            .iter()
            .filter_map(|t| self.term_ids.get(t.as_str()).copied())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        let docs = self.live_slots as f32;
        let avg_len = (self.total_len as f32 / docs).max(1.0);
        let mut acc: HashMap<u32, f32> = HashMap::new();
        for tid in distinct {
            let postings = &self.postings[tid as usize];
            if postings.is_empty() {
                continue;
            }
            let df = postings.len() as f32;
            let idf = (1.0 + (docs - df + 0.5) / (df + 0.5)).ln();
            for &(slot, tf) in postings {
                let s = slot as usize;
                if !scopes.contains(&self.slot_scope[s]) {
                    continue;
                }
                let tf = tf as f32;
                let norm = K1 * (1.0 - B + B * self.slot_len[s] as f32 / avg_len);
                *acc.entry(slot).or_insert(0.0) += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        top_n(acc.into_iter().collect(), n)
    }

    /// Cosine (dot product of unit vectors) over chunks in `scopes` that have vectors: the
    /// best `n` slots, best first.
    pub fn search_dense(&self, query: &[f32], scopes: &[u32], n: usize) -> Vec<(u32, f32)> {
        if self.dim == 0 || query.len() != self.dim || scopes.is_empty() {
            return Vec::new();
        }
        let mut q8 = vec![0i8; self.dim];
        let qs = quantise(query, &mut q8);
        if qs == 0.0 {
            return Vec::new();
        }
        // Pass 1: approximate scores from the i8 copies; keep a generous candidate set.
        let cap = n.saturating_mul(4).max(64);
        let candidates = self.scan_quantised(&q8, scopes, cap);
        // Pass 2: exact cosine for the candidates.
        let exact = candidates
            .into_iter()
            .map(|(s, _)| {
                let i = s as usize * self.dim;
                (s, dot(query, &self.vectors[i..i + self.dim]))
            })
            .collect();
        top_n(exact, n)
    }

    /// The best `cap` slots in `scopes` by the i8 approximation of the cosine, best first
    /// (ties by slot). Rows are scored a block at a time (one kernel call per block when the
    /// whole block is in scope); a running floor (the worst of the best `cap` so far) keeps
    /// most rows out of the candidate list. Scanning slots in order and keeping rows equal to
    /// the floor makes this exactly `top_n` of all the scores.
    fn scan_quantised(&self, q8: &[i8], scopes: &[u32], cap: usize) -> Vec<(u32, f32)> {
        const BLOCK: usize = 256;
        let dim = self.dim;
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(2 * cap + BLOCK);
        let mut floor = f32::NEG_INFINITY;
        let mut dots = [0i32; BLOCK];
        let mut live = [false; BLOCK];
        let total = self.slot_scope.len();
        let mut start = 0;
        while start < total {
            let end = (start + BLOCK).min(total);
            let k = end - start;
            for (s, l) in (start..end).zip(live.iter_mut()) {
                *l = self.slot_has_vec[s] && scopes.contains(&self.slot_scope[s]);
            }
            if live[..k].iter().all(|l| *l) {
                simd::dots(q8, &self.qvectors[start * dim..end * dim], &mut dots[..k]);
            } else {
                for (j, s) in (start..end).enumerate().filter(|(j, _)| live[*j]) {
                    simd::dots(
                        q8,
                        &self.qvectors[s * dim..(s + 1) * dim],
                        &mut dots[j..j + 1],
                    );
                }
            }
            for (j, s) in (start..end).enumerate() {
                if !live[j] {
                    continue;
                }
                let score = dots[j] as f32 / self.qscale[s];
                if score < floor {
                    continue;
                }
                best.push((s as u32, score));
            }
            if best.len() >= 2 * cap {
                best = top_n(best, cap);
                floor = best.last().map_or(f32::NEG_INFINITY, |b| b.1);
            }
            start = end;
        }
        top_n(best, cap)
    }
}

/// Dot product with eight independent accumulators, so the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// Writes `v * scale` rounded into `out` and returns `scale` (0 for a zero vector).
fn quantise(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let scale = 127.0 / max;
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x * scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// The `n` highest scores, best first (ties by slot, so results are deterministic).
fn top_n(mut scored: Vec<(u32, f32)>, n: usize) -> Vec<(u32, f32)> {
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if scored.len() > n && n > 0 {
        scored.select_nth_unstable_by(n - 1, cmp);
        scored.truncate(n);
    }
    scored.sort_unstable_by(cmp);
    scored.truncate(n);
    scored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::terms;

    fn record(id: &str, scope: &str, text: &str) -> MemoryRecord {
        MemoryRecord {
            id: id.into(),
            scope: scope.into(),
            text: text.into(),
            metadata: Default::default(),
            source: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn entry(text: &str, v: Option<Vec<f32>>) -> ChunkEntry {
        ChunkEntry {
            terms: terms(text),
            vector: v,
            foreign: None,
            stored: None,
        }
    }

    #[test]
    fn bm25_ranks_and_respects_scopes() {
        let mut ix = Index::new(2);
        ix.insert(
            record("m1", "a", "postgres databases"),
            vec![entry("postgres databases", Some(vec![1.0, 0.0]))],
        );
        ix.insert(
            record("m2", "a", "cats and dogs"),
            vec![entry("cats and dogs", Some(vec![0.0, 1.0]))],
        );
        ix.insert(
            record("m3", "b", "database tuning"),
            vec![entry("database tuning", Some(vec![1.0, 0.0]))],
        );
        let a = ix.scope_id("a").unwrap();
        let b = ix.scope_id("b").unwrap();
        let hits = ix.search_bm25(&terms("database"), &[a], 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(ix.memory_of(hits[0].0).map(|m| &**m), Some("m1"));
        assert_eq!(ix.search_bm25(&terms("database"), &[a, b], 10).len(), 2);
        let dense = ix.search_dense(&[0.0, 1.0], &[a], 10);
        assert_eq!(ix.memory_of(dense[0].0).map(|m| &**m), Some("m2"));
    }

    #[test]
    fn foreign_vectors_are_counted_per_embedder_until_their_memory_goes() {
        let mut ix = Index::new(2);
        let foreign = |text: &str, model: &str| ChunkEntry {
            terms: terms(text),
            vector: None,
            foreign: Some(Arc::from(model)),
            stored: Some(Arc::from(model)),
        };
        ix.insert(
            record("m1", "a", "alpha"),
            vec![foreign("alpha", "x:old"), foreign("alpha two", "x:old")],
        );
        ix.insert(
            record("m2", "a", "beta"),
            vec![
                foreign("beta", "y:other"),
                entry("beta", Some(vec![1.0, 0.0])),
            ],
        );
        let counts = |ix: &Index| -> Vec<(String, usize)> {
            ix.foreign()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect()
        };
        assert_eq!(
            counts(&ix),
            [("x:old".to_owned(), 2), ("y:other".to_owned(), 1)]
        );
        // Re-embedded: replaced by an entry with its own vector.
        ix.insert(
            record("m1", "a", "alpha"),
            vec![entry("alpha", Some(vec![0.0, 1.0]))],
        );
        assert_eq!(counts(&ix), [("y:other".to_owned(), 1)]);
        ix.remove("m2");
        assert!(ix.foreign().is_empty());
    }

    #[test]
    fn an_index_of_unknown_dimension_takes_the_first_vectors() {
        let mut ix = Index::new(0);
        ix.insert(
            record("m0", "a", "no vector"),
            vec![entry("no vector", None)],
        );
        ix.insert(
            record("m1", "a", "one"),
            vec![entry("one", Some(vec![0.6, 0.8, 0.0]))],
        );
        assert_eq!(ix.dim(), 3);
        let a = ix.scope_id("a").unwrap();
        let hits = ix.search_dense(&[0.6, 0.8, 0.0], &[a], 5);
        assert_eq!(hits.len(), 1);
        assert_eq!(ix.memory_of(hits[0].0).unwrap().as_ref(), "m1");
        // Vectors of another length than the adopted one are left out.
        ix.insert(
            record("m2", "a", "two"),
            vec![entry("two", Some(vec![1.0, 0.0]))],
        );
        assert_eq!(ix.search_dense(&[0.6, 0.8, 0.0], &[a], 5).len(), 1);
    }

    #[test]
    fn forgotten_terms_are_dropped_and_their_ids_reused() {
        let mut ix = Index::new(0);
        ix.insert(
            record("keep", "a", "shared"),
            vec![entry("shared words", None)],
        );
        let a = ix.scope_id("a").unwrap();
        let base = ix.term_count();
        // Add and forget texts with ever new words, as a long-running server does: the
        // vocabulary must not keep the words of forgotten memories.
        for i in 0..1000 {
            let id = format!("m{i}");
            let text = format!("shared note{i} word{i}");
            // Two chunks with the same new word: freed once, not twice.
            ix.insert(
                record(&id, "a", &text),
                vec![entry(&text, None), entry(&format!("note{i}"), None)],
            );
            assert_eq!(
                ix.search_bm25(&terms(&format!("note{i}")), &[a], 10).len(),
                2
            );
            assert!(ix.remove(&id));
        }
        assert_eq!(ix.term_count(), base);
        assert!(
            ix.postings.len() <= base + 2,
            "{} term slots",
            ix.postings.len()
        );
        assert_eq!(ix.free_terms.len(), ix.postings.len() - base);
        // A reused id finds only its new word's memory, and the old words find nothing.
        ix.insert(
            record("new", "a", "fresh"),
            vec![entry("fresh shared", None)],
        );
        assert!(ix.search_bm25(&terms("note999 word5"), &[a], 10).is_empty());
        let hits = ix.search_bm25(&terms("fresh"), &[a], 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(ix.memory_of(hits[0].0).map(|m| &**m), Some("new"));
        assert_eq!(ix.search_bm25(&terms("shared"), &[a], 10).len(), 2);
    }

    #[test]
    fn remove_clears_every_structure_and_slots_are_reused() {
        let mut ix = Index::new(2);
        ix.insert(
            record("m1", "a", "alpha"),
            vec![
                entry("alpha", Some(vec![1.0, 0.0])),
                entry("beta", Some(vec![0.0, 1.0])),
            ],
        );
        let a = ix.scope_id("a").unwrap();
        assert_eq!(ix.chunk_count(), 2);
        assert!(ix.remove("m1"));
        assert!(!ix.remove("m1"));
        assert_eq!(ix.chunk_count(), 0);
        assert!(ix.search_bm25(&terms("alpha beta"), &[a], 10).is_empty());
        assert!(ix.search_dense(&[1.0, 0.0], &[a], 10).is_empty());
        assert!(ix.postings.iter().all(Vec::is_empty));
        assert!(ix.vectors.iter().all(|x| *x == 0.0));
        assert!(ix.qvectors.iter().all(|x| *x == 0));
        ix.insert(
            record("m2", "a", "gamma"),
            vec![entry("gamma", Some(vec![1.0, 0.0]))],
        );
        assert_eq!(ix.slot_scope.len(), 2, "a freed slot is reused");
        assert_eq!(ix.search_bm25(&terms("gamma"), &[a], 10).len(), 1);
    }

    #[test]
    fn quantised_scan_keeps_the_exact_order() {
        let dim = 48;
        let mut ix = Index::new(dim);
        let vecs: Vec<Vec<f32>> = (0..300)
            .map(|i| {
                let v: Vec<f32> = (0..dim)
                    .map(|j| ((i * 31 + j * 17) % 23) as f32 - 11.0)
                    .collect();
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / n).collect()
            })
            .collect();
        for (i, v) in vecs.iter().enumerate() {
            let id = format!("m{i}");
            ix.insert(
                record(&id, "a", "x"),
                vec![ChunkEntry {
                    terms: vec![],
                    vector: Some(v.clone()),
                    foreign: None,
                    stored: None,
                }],
            );
        }
        let a = ix.scope_id("a").unwrap();
        let q = &vecs[7];
        let got = ix.search_dense(q, &[a], 10);
        let mut exact: Vec<(usize, f32)> = vecs
            .iter()
            .enumerate()
            .map(|(i, v)| (i, dot(q, v)))
            .collect();
        exact.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        let want: Vec<String> = exact
            .iter()
            .take(10)
            .map(|(i, _)| format!("m{i}"))
            .collect();
        let got: Vec<String> = got
            .iter()
            .map(|(s, _)| ix.memory_of(*s).unwrap().to_string())
            .collect();
        assert_eq!(got, want);
    }

    /// The block scan, its SIMD kernel and its running floor change nothing: the result is
    /// exactly that of a plain one-row-at-a-time scan of the same spec (i8 scores, best
    /// `max(4n, 64)` rescored in f32), which is also the exact f32 top `n` here.
    #[test]
    fn block_scan_equals_plain_scan_and_exact_order() {
        use rand::{Rng, SeedableRng};
        let dim = 384;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let unit = |rng: &mut rand::rngs::StdRng| {
            let v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let mut ix = Index::new(dim);
        for i in 0..3000 {
            // Two scopes interleaved in runs (whole blocks and mixed blocks), some chunks
            // without vectors, and holes left by removed memories.
            let scope = if (i / 300) % 3 == 2 || i % 7 == 0 {
                "b"
            } else {
                "a"
            };
            let vector = (i % 11 != 0).then(|| unit(&mut rng));
            ix.insert(
                record(&format!("m{i}"), scope, "x"),
                vec![ChunkEntry {
                    terms: vec![],
                    vector,
                    foreign: None,
                    stored: None,
                }],
            );
        }
        for i in (0..3000).step_by(13) {
            ix.remove(&format!("m{i}"));
        }
        let a = ix.scope_id("a").unwrap();
        let b = ix.scope_id("b").unwrap();
        for (qi, scopes) in [vec![a], vec![b], vec![a, b]]
            .iter()
            .cycle()
            .take(30)
            .enumerate()
        {
            let q = unit(&mut rng);
            let n = [1, 10, 25][qi % 3];
            let mut q8 = vec![0i8; dim];
            quantise(&q, &mut q8);
            let live = |s: usize| ix.slot_has_vec[s] && scopes.contains(&ix.slot_scope[s]);
            let approx: Vec<(u32, f32)> = (0..ix.slot_scope.len())
                .filter(|s| live(*s))
                .map(|s| {
                    let row = &ix.qvectors[s * dim..(s + 1) * dim];
                    let d: i32 = q8
                        .iter()
                        .zip(row)
                        .map(|(x, y)| i32::from(*x) * i32::from(*y))
                        .sum();
                    (s as u32, d as f32 / ix.qscale[s])
                })
                .collect();
            let rescored = top_n(approx, (4 * n).max(64))
                .into_iter()
                .map(|(s, _)| (s, dot(&q, &ix.vectors[s as usize * dim..][..dim])))
                .collect();
            let plain = top_n(rescored, n);
            let exact = top_n(
                (0..ix.slot_scope.len())
                    .filter(|s| live(*s))
                    .map(|s| (s as u32, dot(&q, &ix.vectors[s * dim..][..dim])))
                    .collect(),
                n,
            );
            assert_eq!(
                plain, exact,
                "query {qi}: i8 candidates missed an exact hit"
            );
            assert_eq!(ix.search_dense(&q, scopes, n), plain, "query {qi}");
        }
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
