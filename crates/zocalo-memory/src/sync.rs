//! Several processes, several nodes: keeping one process's indexes in step with the writes of
//! every other handle on the same database.
//!
//! Every write appends one row per memory it touched to `memory_changes`, in the transaction
//! that changes the memory (migration 0032). A handle knows the highest seq its indexes
//! include; [`Memory::sync`] reads the rows past it, reads those memories' current rows (the
//! truth: a change whose memory is gone is a delete, whatever its `op`) and replaces or
//! removes them in the indexes. Rows become visible in seq order (SQLite has one writer at a
//! time; Postgres writers take an advisory lock before inserting theirs), so "every seq above
//! the last one applied" is exactly what this handle has not seen.
//!
//! The log is pruned of rows older than [`CHANGE_LOG_RETENTION`], always from the oldest and
//! always keeping the newest of the rows old enough to go. A handle that finds the log no
//! longer reaches back to its seq (it slept through the retention) or ends before it (a
//! restored database) rebuilds its indexes from the rows: the only full reload.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use zocalo_store::{with_pool, Pool};

use crate::index::ChunkEntry;
use crate::memory::{now_ms, MemoryRow, CHANGE_BOUNDS, CHANGE_PRUNE};
use crate::model::MemoryRecord;
use crate::{Memory, MemoryError};

const CHANGE_SELECT: &str = include_str!("sql/change_select.sql");
const CHANGE_CHANNEL: &str = include_str!("sql/change_channel.sql");
const MEMORY_SELECT_IDS: &str = include_str!("sql/memory_select_ids.sql");

/// How long change rows are kept. A handle that has not synced for longer than this rebuilds
/// its indexes from the rows when it next syncs.
pub const CHANGE_LOG_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// `recall` reads the change log at most this often per handle.
pub const CATCH_UP_EVERY: Duration = Duration::from_millis(250);
/// How often a handle prunes the log (in its next write, or from [`Memory::spawn_sync`]).
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Change rows read per query.
const PAGE: i64 = 1000;
/// Memories read per query (one bound parameter each).
const IDS_PER_QUERY: usize = 500;
/// The longest `recall` goes without trying the change log again after failures (each
/// failure doubles the pause from [`CATCH_UP_EVERY`]), so that a database that is down does
/// not add its connect timeout to every search.
const CATCH_UP_MAX_PAUSE: Duration = Duration::from_secs(30);
/// How long [`Memory::spawn_sync`] polls alone after its Postgres listener failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(30);

/// What one [`Memory::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Change rows read past the last one applied (this handle's own writes included).
    pub changes: usize,
    /// Memories (re)indexed from their rows.
    pub upserted: usize,
    /// Memories taken out of the indexes (forgotten through another handle).
    pub removed: usize,
    /// The indexes were rebuilt from the rows: the change log no longer reached back to the
    /// last change applied (pruned meanwhile), or ended before it (a restored database).
    pub reloaded: bool,
    /// The last change seq the indexes include now.
    pub seq: i64,
}

/// A handle's place in the change log (behind [`Memory`]'s sync lock).
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// Every change with a seq up to this one is in the indexes.
    last: i64,
    /// Seqs above `last` of this handle's own writes: in the indexes already, so a sync skips
    /// them instead of reading those memories back.
    own: BTreeSet<i64>,
}

impl SyncState {
    pub(crate) fn reset(&mut self, last: i64) {
        self.last = last;
        self.own.clear();
    }

    /// Records the seqs of a write this handle made (and indexed); moves `last` past them
    /// when nothing came between, the usual case with a single writer.
    pub(crate) fn applied_own(&mut self, seqs: Vec<i64>) {
        let last = self.last;
        self.own.extend(seqs.into_iter().filter(|s| *s > last));
        while self.own.first() == Some(&(self.last + 1)) {
            self.own.pop_first();
            self.last += 1;
        }
    }

    /// Everything up to `to` is applied now.
    fn advance(&mut self, to: i64) {
        self.last = self.last.max(to);
        self.own = self.own.split_off(&(self.last + 1));
        self.applied_own(Vec::new());
    }
}

/// When `recall` next reads the change log.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// None: at the first chance.
    pub(crate) next: Option<Instant>,
    /// Failed catch-ups in a row.
    failures: u32,
}

/// A memory row joined with one of its chunks (chunk columns NULL if it has none).
#[derive(sqlx::FromRow)]
struct SyncRow {
    #[sqlx(flatten)]
    memory: MemoryRow,
    chunk_seq: Option<i32>,
    chunk_text: Option<String>,
    model: Option<String>,
    vector: Option<Vec<u8>>,
}

struct SyncChunk {
    text: String,
    model: Option<String>,
    vector: Option<Vec<u8>>,
}

impl Memory {
    /// Brings the indexes up to date with every write made through any handle on this
    /// database since the last sync (or the load): memories added or updated elsewhere are
    /// (re)indexed from their rows, forgotten ones removed. Cheap when nothing changed (one
    /// query). `recall` calls this by itself at most every [`CATCH_UP_EVERY`];
    /// [`Memory::spawn_sync`] calls it on a timer.
    pub async fn sync(&self) -> Result<SyncReport, MemoryError> {
        self.ensure_loaded().await?;
        let mut state = self.sync.lock().await;
        self.sync_locked(&mut state).await
    }

    /// Keeps the indexes current without searches: syncs every `every` (250-500 ms keeps
    /// other processes' writes visible well within 2 s) and prunes the change log once an
    /// hour, until `stop` completes or the last other `Arc` of this memory is dropped. For a
    /// long-running process (the daemon, the server). On PostgreSQL it also listens for the
    /// writers' notifications and syncs as soon as one arrives; the timer stays, as a
    /// notification is lost while the listening connection is down. A failing database is
    /// logged once and retried on the next tick.
    pub fn spawn_sync<F>(self: &Arc<Self>, every: Duration, stop: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let memory = Arc::downgrade(self);
        let every = every.max(Duration::from_millis(10));
        tokio::spawn(async move {
            tokio::pin!(stop);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            let mut listener: Option<PgListener> = None;
            // When to (re)try listening; None: never (SQLite has no notifications).
            let mut listen_at = Some(Instant::now());
            loop {
                if listener.is_none() && listen_at.is_some_and(|t| t <= Instant::now()) {
                    let Some(m) = memory.upgrade() else { break };
                    let listened = tokio::select! {
                        () = &mut stop => break,
                        l = m.listen() => l,
                    };
                    drop(m);
                    match listened {
                        Ok(l) => {
                            listen_at = l.is_some().then(|| Instant::now() + RELISTEN_AFTER);
                            listener = l;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "memory: cannot listen for changes; polling");
                            listen_at = Some(Instant::now() + RELISTEN_AFTER);
                        }
                    }
                }
                tokio::select! {
                    () = &mut stop => break,
                    _ = tick.tick() => {}
                    got = notified(&mut listener) => {
                        if let Err(e) = got {
                            tracing::debug!(error = %e, "memory: change listener lost; polling");
                            listener = None;
                        }
                    }
                }
                let Some(m) = memory.upgrade() else { break };
                let work = async {
                    let report = m.sync().await?;
                    if let Some(cutoff) = m.prune_due() {
                        m.prune_before(cutoff).await?;
                    }
                    Ok::<_, MemoryError>(report)
                };
                let result = tokio::select! {
                    () = &mut stop => break,
                    r = work => r,
                };
                match result {
                    Ok(r) => {
                        if failing {
                            tracing::info!("memory: change log readable again");
                        }
                        failing = false;
                        if r.changes > 0 || r.reloaded {
                            tracing::debug!(?r, "memory: synced");
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "memory: cannot sync with the database; retrying");
                        }
                        failing = true;
                    }
                }
            }
        })
    }

    /// A listener on this schema's change channel (None on SQLite).
    async fn listen(&self) -> Result<Option<PgListener>, MemoryError> {
        let Pool::Postgres(pool) = self.store.pool() else {
            return Ok(None);
        };
        let channel: String = sqlx::query_scalar(CHANGE_CHANNEL).fetch_one(pool).await?;
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(&channel).await?;
        Ok(Some(listener))
    }

    /// Deletes change rows older than `older_than`, except the newest of those (so that a
    /// handle that had applied it still finds its place in the log). Writes and
    /// [`Memory::spawn_sync`] do this once an hour with [`CHANGE_LOG_RETENTION`]. Returns
    /// the number of rows deleted.
    pub async fn prune_changes(&self, older_than: Duration) -> Result<u64, MemoryError> {
        let keep = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        self.prune_before(now_ms().saturating_sub(keep)).await
    }

    async fn prune_before(&self, cutoff_ms: i64) -> Result<u64, MemoryError> {
        let n = with_pool!(self.store.pool(), |p| sqlx::query(CHANGE_PRUNE)
            .bind(cutoff_ms)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n)
    }

    /// What a search does first: a sync at most every [`CATCH_UP_EVERY`], and none when
    /// another task of this handle is syncing or writing (that one brings the indexes
    /// forward; this search goes ahead with them as they are). A failure is logged, not
    /// returned: the indexes are still there to search.
    pub(crate) async fn catch_up(&self) {
        if !self.check_due() {
            return;
        }
        let Ok(mut state) = self.sync.try_lock() else {
            return;
        };
        let result = self.sync_locked(&mut state).await;
        let mut c = self.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => c.failures = 0,
            Err(e) => {
                if c.failures == 0 {
                    tracing::warn!(error = %e, "memory: cannot read the change log; searching without other processes' latest writes");
                }
                c.failures = c.failures.saturating_add(1);
                let pause = CATCH_UP_EVERY
                    .saturating_mul(1u32 << c.failures.min(10))
                    .min(CATCH_UP_MAX_PAUSE);
                c.next = Some(Instant::now() + pause);
            }
        }
    }

    /// Whether a catch-up is due; if so, claims it (so concurrent searches do not all go).
    fn check_due(&self) -> bool {
        let mut c = self.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = c.next.is_none_or(|t| t <= now);
        if due {
            c.next = Some(now + CATCH_UP_EVERY);
        }
        due
    }

    async fn sync_locked(&self, state: &mut SyncState) -> Result<SyncReport, MemoryError> {
        self.mark_checked();
        let mut report = SyncReport::default();
        let (lo, hi) = self.change_bounds().await?;
        let hi = hi.unwrap_or(0);
        if hi < state.last {
            tracing::warn!(
                log_ends = hi,
                applied = state.last,
                "memory: the change log ends before changes this process applied (a restored database?); rebuilding the indexes"
            );
            return self.reload(state, report).await;
        }
        if hi == state.last {
            report.seq = state.last;
            return Ok(report);
        }
        if pruned_past(lo, state.last) {
            tracing::info!("memory: the change log was pruned past this process's place; rebuilding the indexes");
            return self.reload(state, report).await;
        }
        loop {
            let page: Vec<(i64, String)> =
                with_pool!(self.store.pool(), |p| sqlx::query_as(CHANGE_SELECT)
                    .bind(state.last)
                    .bind(PAGE)
                    .fetch_all(p)
                    .await)?;
            // Pruning deletes the oldest rows only: if the log still reaches back to `last`
            // after the page was read, it did while it was read, so the page skipped nothing.
            let (lo, _) = self.change_bounds().await?;
            if pruned_past(lo, state.last) {
                tracing::info!("memory: the change log was pruned past this process's place; rebuilding the indexes");
                return self.reload(state, report).await;
            }
            let Some(&(end, _)) = page.last() else { break };
            report.changes += page.len();
            let ids: BTreeSet<&str> = page
                .iter()
                .filter(|(seq, _)| !state.own.contains(seq))
                .map(|(_, id)| id.as_str())
                .collect();
            let (upserted, removed) = self.apply(&ids).await?;
            report.upserted += upserted;
            report.removed += removed;
            state.advance(end);
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        report.seq = state.last;
        Ok(report)
    }

    /// The oldest and newest seq in the change log (None: it is empty).
    async fn change_bounds(&self) -> Result<(Option<i64>, Option<i64>), MemoryError> {
        let bounds = with_pool!(self.store.pool(), |p| sqlx::query_as(CHANGE_BOUNDS)
            .fetch_one(p)
            .await)?;
        Ok(bounds)
    }

    async fn reload(
        &self,
        state: &mut SyncState,
        mut report: SyncReport,
    ) -> Result<SyncReport, MemoryError> {
        let (index, last) = self.build_index().await?;
        *self.write_index() = index;
        state.reset(last);
        report.reloaded = true;
        report.seq = last;
        Ok(report)
    }

    /// Replaces the memories `ids` in the indexes by their current rows, or removes those
    /// that have none. Returns (re)indexed and removed counts.
    pub(crate) async fn apply(&self, ids: &BTreeSet<&str>) -> Result<(usize, usize), MemoryError> {
        let ids: Vec<&str> = ids.iter().copied().collect();
        let mut found: BTreeMap<String, (MemoryRow, Vec<SyncChunk>)> = BTreeMap::new();
        for batch in ids.chunks(IDS_PER_QUERY) {
            let params: Vec<String> = (1..=batch.len()).map(|i| format!("${i}")).collect();
            let sql = MEMORY_SELECT_IDS.replace("/* ids */", &params.join(", "));
            // One statement per batch, so a memory and its chunks come from one snapshot.
            let rows: Vec<SyncRow> = with_pool!(self.store.pool(), |p| {
                let mut q = sqlx::query_as(&sql);
                for id in batch {
                    q = q.bind(*id);
                }
                q.fetch_all(p).await
            })?;
            for row in rows {
                let entry = found
                    .entry(row.memory.id.clone())
                    .or_insert_with(|| (row.memory, Vec::new()));
                if let (Some(_), Some(text)) = (row.chunk_seq, row.chunk_text) {
                    entry.1.push(SyncChunk {
                        text,
                        model: row.model,
                        vector: row.vector,
                    });
                }
            }
        }

        let fill = self.fills_missing();
        let mut gone: Vec<&str> = Vec::new();
        let mut fresh: Vec<(MemoryRecord, Vec<ChunkEntry>)> = Vec::new();
        // (memory, chunk) positions in `fresh` whose vector this process computes: none
        // stored, with an in-process embedder (another embedder's vectors are flagged
        // foreign, for `reindex`).
        let mut to_embed: Vec<(usize, usize, String)> = Vec::new();
        for id in ids {
            let Some((row, chunks)) = found.remove(id) else {
                gone.push(id);
                continue;
            };
            let record = match row.decode() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(memory = id, error = %e, "memory: unreadable row left out of the indexes");
                    gone.push(id);
                    continue;
                }
            };
            // Already as in the database (this handle's own write, or indexed at load): the
            // same row, and the same embedders' vectors stored for its chunks.
            let stored: Vec<Option<std::sync::Arc<str>>> = chunks
                .iter()
                .map(|c| {
                    c.vector
                        .as_ref()
                        .and(c.model.as_deref())
                        .map(std::sync::Arc::from)
                })
                .collect();
            {
                let index = self.read_index();
                if index.get(id) == Some(&record) && index.stored_models(id) == Some(stored) {
                    continue;
                }
            }
            let mut entries = Vec::with_capacity(chunks.len());
            for (i, c) in chunks.into_iter().enumerate() {
                let entry = self.stored_entry(
                    id,
                    &c.text,
                    &record.metadata,
                    c.model.as_deref(),
                    c.vector.as_deref(),
                );
                if fill && entry.vector.is_none() && entry.foreign.is_none() {
                    to_embed.push((fresh.len(), i, self.embed_text(&c.text, &record.metadata)));
                }
                entries.push(entry);
            }
            fresh.push((record, entries));
        }
        if !to_embed.is_empty() {
            // Computed for this process's indexes only, not stored (as at load, the next load
            // stores them).
            let texts = to_embed.iter().map(|(_, _, t)| t.clone()).collect();
            let vectors = self.embed_all(texts, &|_| {}).await?;
            for ((m, c, _), v) in to_embed.into_iter().zip(vectors) {
                if let Some(entry) = fresh.get_mut(m).and_then(|f| f.1.get_mut(c)) {
                    entry.vector = Some(v);
                }
            }
        }
        let mut index = self.write_index();
        let removed = gone.into_iter().filter(|id| index.remove(id)).count();
        let upserted = fresh.len();
        for (record, entries) in fresh {
            index.insert(record, entries);
        }
        Ok((upserted, removed))
    }
}

/// The next notification, or never without a listener.
async fn notified(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(l) => l.recv().await.map(drop),
        None => std::future::pending().await,
    }
}

/// Whether rows past `last` may have been pruned: the oldest row left is more than one past
/// it (pruning deletes a prefix of the log, so everything below the oldest row may be gone).
fn pruned_past(oldest: Option<i64>, last: i64) -> bool {
    oldest.is_none_or(|lo| lo > last.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_writes_move_the_place_only_when_contiguous() {
        let mut s = SyncState::default();
        s.reset(10);
        s.applied_own(vec![11, 12]);
        assert_eq!((s.last, s.own.len()), (12, 0));
        // 13 is someone else's: 14 waits for a sync.
        s.applied_own(vec![14]);
        assert_eq!(
            (s.last, s.own.iter().copied().collect::<Vec<_>>()),
            (12, vec![14])
        );
        s.advance(13);
        assert_eq!((s.last, s.own.len()), (14, 0));
        // Seqs at or below the place are ignored.
        s.applied_own(vec![3]);
        assert_eq!((s.last, s.own.len()), (14, 0));
        s.applied_own(vec![20]);
        s.advance(25);
        assert_eq!((s.last, s.own.len()), (25, 0));
    }

    #[test]
    fn pruned_past_means_a_hole_below_the_oldest_row() {
        assert!(!pruned_past(Some(5), 4));
        assert!(!pruned_past(Some(5), 7));
        assert!(pruned_past(Some(6), 4));
        assert!(pruned_past(None, 4));
    }
}
