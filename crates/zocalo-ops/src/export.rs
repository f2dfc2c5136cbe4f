//! The portable export: a zocalo database's lasting data as one JSON document, in a format
//! that does not depend on the backend, and its import (one transaction, all or nothing).
//!
//! What is exported: conversations with their messages, caller-chosen key, settings and
//! summaries; memories (text, scope, metadata, source, timestamps; the vectors are the
//! embedder's output and are computed again where the export is imported); automations (the
//! rule, the action, paused, where the schedule stands); services (their definitions; the
//! process state belongs to the machine that ran them). Job queues, run history, audit and
//! channel inboxes are the record of what happened, not data to carry over: a backup of a
//! SQLite home keeps them, an export does not. The format is described in
//! docs/operations.md; [`EXPORT_VERSION`] changes whenever it does.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use zocalo_memory::MemoryConfig;
use zocalo_store::{with_pool, Backend, Store};

use zocalo_core::paths::DataHome;

use crate::skills::{self, read_skills, ExportSkillFile};
use crate::ts::{from_ms, Ts};
use crate::OpsError;

/// `format` of every export document.
pub const EXPORT_FORMAT: &str = "zocalo-export";
/// The version of the document's shape this build writes and reads.
pub const EXPORT_VERSION: u32 = 1;

/// One export document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_VERSION`] of the zocalo that wrote it.
    pub version: u32,
    /// The zocalo that wrote it (informational).
    pub zocalo_version: String,
    /// The database schema version it was read from: an import refuses a newer one.
    pub schema_version: i64,
    pub exported_at: DateTime<Utc>,
    pub conversations: Vec<ExportConversation>,
    pub memories: Vec<ExportMemory>,
    pub automations: Vec<ExportAutomation>,
    pub services: Vec<ExportService>,
    /// Installed skills' files ([`export_home`] reads them; [`export`] alone has none).
    #[serde(default)]
    pub skills: Vec<ExportSkillFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConversation {
    pub id: String,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The caller-chosen key (`ask --conv-key`) that maps to it, if any.
    #[serde(default)]
    pub key: Option<ExportKey>,
    /// What the conversation keeps between asks (persona, model), if anything.
    #[serde(default)]
    pub settings: Option<ExportSettings>,
    /// The model's summaries of its oldest turns, oldest first.
    #[serde(default)]
    pub summaries: Vec<ExportSummary>,
    /// In order (`seq` 1, 2, 3, ...).
    pub messages: Vec<ExportMessage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportKey {
    pub key: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    pub persona: Option<String>,
    pub model: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSummary {
    pub through_seq: i64,
    pub text: String,
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportMessage {
    pub id: String,
    pub seq: i64,
    /// `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
    /// The calls an assistant message made: `[{"id","name","arguments"}]`.
    #[serde(default)]
    pub tool_calls: Option<Value>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub is_error: bool,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub input_tokens: Option<i64>,
    #[serde(default)]
    pub output_tokens: Option<i64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportMemory {
    pub id: String,
    pub scope: String,
    pub text: String,
    /// An object of string -> string | number.
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
    #[serde(default)]
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportAutomation {
    pub id: String,
    pub name: String,
    /// The rule text (RRULE plus EXDATE/RDATE lines), the local start and the zone.
    pub rrule: String,
    pub dtstart: String,
    pub tz: String,
    /// As zocalo-scheduler stores it: `{"kind": "ask", "message": ...}`, `{"kind": "shell", ...}`.
    pub action: Value,
    pub paused: bool,
    /// The next occurrence to fire (None: the rule has no more).
    pub next_run_at: Option<DateTime<Utc>>,
    /// `skip`, `run-once` or `run-all`: what happens to occurrences missed meanwhile.
    pub misfire: String,
    pub catchup_limit: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportService {
    pub id: String,
    pub name: String,
    pub command: String,
    /// `always`, `on-failure` or `never`.
    pub restart: String,
    /// `{"http": URL}` or `{"cmd": COMMAND}`.
    #[serde(default)]
    pub health: Option<Value>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: serde_json::Map<String, Value>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// `running` or `stopped`: a daemon starts the services marked running.
    pub desired: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How many records of each kind an import wrote (or an export holds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub conversations: usize,
    pub messages: usize,
    pub memories: usize,
    pub automations: usize,
    pub services: usize,
    /// Installed skills (folders).
    pub skills: usize,
}

impl Export {
    pub fn counts(&self) -> Counts {
        Counts {
            conversations: self.conversations.len(),
            messages: self.conversations.iter().map(|c| c.messages.len()).sum(),
            memories: self.memories.len(),
            automations: self.automations.len(),
            services: self.services.len(),
            skills: self
                .skills
                .iter()
                .filter_map(ExportSkillFile::skill)
                .collect::<HashSet<_>>()
                .len(),
        }
    }

    /// Parses a document, checking its format and version (not yet the schema version,
    /// which needs the target store: [`import`] does that).
    pub fn from_json(text: &[u8]) -> Result<Export, OpsError> {
        let de = &mut serde_json::Deserializer::from_slice(text);
        let export: Export = serde_path_to_error_free(de)?;
        if export.format != EXPORT_FORMAT {
            return Err(OpsError::BadExport(format!(
                "format is {:?}, expected {EXPORT_FORMAT:?}",
                export.format
            )));
        }
        if export.version != EXPORT_VERSION {
            return Err(OpsError::BadExport(format!(
                "export format version {} is not {EXPORT_VERSION}, the one this zocalo reads{}",
                export.version,
                if export.version > EXPORT_VERSION {
                    ": upgrade zocalo"
                } else {
                    ""
                }
            )));
        }
        export.validate()?;
        Ok(export)
    }

    /// The rules the database would enforce, checked up front so the message names the
    /// record instead of quoting a constraint.
    fn validate(&self) -> Result<(), OpsError> {
        let bad = |what: String| Err(OpsError::BadExport(what));
        let mut ids = HashSet::new();
        let mut dup = |kind: &str, id: &str| -> Result<(), OpsError> {
            if id.trim().is_empty() {
                return Err(OpsError::BadExport(format!("a {kind} has an empty id")));
            }
            if !ids.insert(format!("{kind}\0{id}")) {
                return Err(OpsError::BadExport(format!("{kind} {id} appears twice")));
            }
            Ok(())
        };
        let mut keys = HashSet::new();
        for c in &self.conversations {
            dup("conversation", &c.id)?;
            if let Some(k) = &c.key {
                if !keys.insert(k.key.as_str()) {
                    return bad(format!("conversation key {:?} appears twice", k.key));
                }
            }
            let mut seqs = HashSet::new();
            for m in &c.messages {
                dup("message", &m.id)?;
                if m.seq < 1 || !seqs.insert(m.seq) {
                    return bad(format!(
                        "message {} of conversation {}: seq {} is not a new positive number",
                        m.id, c.id, m.seq
                    ));
                }
                if !matches!(m.role.as_str(), "user" | "assistant" | "tool") {
                    return bad(format!("message {}: unknown role {:?}", m.id, m.role));
                }
                if m.role == "tool" && m.tool_call_id.is_none() {
                    return bad(format!("tool message {} has no tool_call_id", m.id));
                }
            }
            for s in &c.summaries {
                if s.through_seq < 1 || s.text.is_empty() {
                    return bad(format!("a summary of conversation {} is malformed", c.id));
                }
            }
        }
        for m in &self.memories {
            dup("memory", &m.id)?;
            if m.text.is_empty() {
                return bad(format!("memory {} has an empty text", m.id));
            }
            // zocalo-memory's own rules, so an imported memory is one it would have stored.
            zocalo_memory::model::validate_scope(&m.scope)
                .and_then(|()| zocalo_memory::model::validate_metadata(&m.metadata))
                .map_err(|e| OpsError::BadExport(format!("memory {}: {e}", m.id)))?;
        }
        let mut names = HashSet::new();
        for a in &self.automations {
            dup("automation", &a.id)?;
            if !names.insert(("automation", a.name.as_str())) {
                return bad(format!("automation name {:?} appears twice", a.name));
            }
            if !matches!(a.misfire.as_str(), "skip" | "run-once" | "run-all") {
                return bad(format!(
                    "automation {}: unknown misfire {:?}",
                    a.name, a.misfire
                ));
            }
            if a.catchup_limit < 1 || a.catchup_limit > i64::from(i32::MAX) {
                return bad(format!("automation {}: catchup_limit out of range", a.name));
            }
        }
        for f in &self.skills {
            if f.skill().is_none() {
                return bad(format!(
                    "skill file path {:?} must be NAME/FILE inside the skills directory",
                    f.path
                ));
            }
            dup("skill file", &f.path)?;
            f.bytes()?;
        }
        for s in &self.services {
            dup("service", &s.id)?;
            if !names.insert(("service", s.name.as_str())) {
                return bad(format!("service name {:?} appears twice", s.name));
            }
            if s.name.is_empty() || s.command.is_empty() {
                return bad(format!("service {} has an empty name or command", s.id));
            }
            if !matches!(s.restart.as_str(), "always" | "on-failure" | "never") {
                return bad(format!(
                    "service {}: unknown restart {:?}",
                    s.name, s.restart
                ));
            }
            if !matches!(s.desired.as_str(), "running" | "stopped") {
                return bad(format!(
                    "service {}: unknown desired {:?}",
                    s.name, s.desired
                ));
            }
        }
        Ok(())
    }
}

/// serde_json with the path of the offending field in the message.
fn serde_path_to_error_free<'de, D>(de: D) -> Result<Export, OpsError>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
{
    Export::deserialize(de).map_err(|e| OpsError::BadExport(e.to_string()))
}

/// What to do with a record whose id (or unique name) the database already has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Import nothing and say which (the default).
    #[default]
    Refuse,
    /// Leave the existing record, import the others.
    Skip,
    /// Delete every conversation, memory, automation and service first (a restore with
    /// `--force`), in the same transaction.
    Replace,
}

/// What [`import`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: Counts,
    /// Records left out because the database had them ([`OnConflict::Skip`]).
    pub skipped: usize,
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    id: String,
    title: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: String,
    conversation_id: String,
    seq: i64,
    role: String,
    content: String,
    tool_calls: Option<Json<Value>>,
    tool_call_id: Option<String>,
    is_error: bool,
    model: Option<String>,
    provider: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key: String,
    conversation_id: String,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SettingsRow {
    conversation_id: String,
    persona: Option<String>,
    model: Option<String>,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    conversation_id: String,
    through_seq: i64,
    text: String,
    model: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct MemoryRow {
    id: String,
    scope: String,
    text: String,
    metadata: String,
    source: Option<String>,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct AutomationRow {
    id: String,
    name: String,
    rrule: String,
    dtstart: String,
    tz: String,
    action: String,
    paused: bool,
    next_run_at: Option<i64>,
    misfire: String,
    catchup_limit: i64,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct ServiceRow {
    id: String,
    name: String,
    command: String,
    restart: String,
    health: Option<String>,
    env: String,
    cwd: Option<String>,
    desired: String,
    created_at: i64,
    updated_at: i64,
}

/// Every table the export reads, read in one transaction (one snapshot: Postgres
/// `REPEATABLE READ`, SQLite's read transaction), so a export taken while others write is
/// consistent: no message without its conversation, no half turn.
struct Rows {
    conversations: Vec<ConversationRow>,
    messages: Vec<MessageRow>,
    keys: Vec<KeyRow>,
    settings: Vec<SettingsRow>,
    summaries: Vec<SummaryRow>,
    memories: Vec<MemoryRow>,
    automations: Vec<AutomationRow>,
    services: Vec<ServiceRow>,
    schema_version: i64,
}

const SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";

/// Reads the store's data into an [`Export`].
pub async fn export(store: &Store) -> Result<Export, OpsError> {
    let backend = store.backend();
    let rows = with_pool!(store.pool(), |p| async {
        let mut tx = p.begin().await?;
        if backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let rows = Rows {
            schema_version: sqlx::query_scalar(SCHEMA_VERSION)
                .fetch_one(&mut *tx)
                .await?,
            conversations: sqlx::query_as(include_str!("sql/export_conversations.sql"))
                .fetch_all(&mut *tx)
                .await?,
            messages: sqlx::query_as(include_str!("sql/export_messages.sql"))
                .fetch_all(&mut *tx)
                .await?,
            keys: sqlx::query_as(include_str!("sql/export_keys.sql"))
                .fetch_all(&mut *tx)
                .await?,
            settings: sqlx::query_as(include_str!("sql/export_settings.sql"))
                .fetch_all(&mut *tx)
                .await?,
            summaries: sqlx::query_as(include_str!("sql/export_summaries.sql"))
                .fetch_all(&mut *tx)
                .await?,
            memories: sqlx::query_as(include_str!("sql/export_memories.sql"))
                .fetch_all(&mut *tx)
                .await?,
            automations: sqlx::query_as(include_str!("sql/export_automations.sql"))
                .fetch_all(&mut *tx)
                .await?,
            services: sqlx::query_as(include_str!("sql/export_services.sql"))
                .fetch_all(&mut *tx)
                .await?,
        };
        tx.commit().await?;
        Ok::<_, sqlx::Error>(rows)
    }
    .await)?;
    assemble(rows)
}

fn assemble(rows: Rows) -> Result<Export, OpsError> {
    let corrupt = |what: String| OpsError::Store(zocalo_store::StoreError::Corrupt(what));
    let mut convs: BTreeMap<String, ExportConversation> = rows
        .conversations
        .into_iter()
        .map(|c| {
            let conv = ExportConversation {
                id: c.id.clone(),
                title: c.title,
                created_at: c.created_at,
                updated_at: c.updated_at,
                key: None,
                settings: None,
                summaries: Vec::new(),
                messages: Vec::new(),
            };
            (c.id, conv)
        })
        .collect();
    // Foreign keys guarantee the parent of each row below is there.
    for m in rows.messages {
        if let Some(c) = convs.get_mut(&m.conversation_id) {
            c.messages.push(ExportMessage {
                id: m.id,
                seq: m.seq,
                role: m.role,
                content: m.content,
                tool_calls: m.tool_calls.map(|j| j.0),
                tool_call_id: m.tool_call_id,
                is_error: m.is_error,
                model: m.model,
                provider: m.provider,
                input_tokens: m.input_tokens,
                output_tokens: m.output_tokens,
                created_at: m.created_at,
            });
        }
    }
    for k in rows.keys {
        if let Some(c) = convs.get_mut(&k.conversation_id) {
            c.key = Some(ExportKey {
                key: k.key,
                created_at: k.created_at,
            });
        }
    }
    for s in rows.settings {
        if let Some(c) = convs.get_mut(&s.conversation_id) {
            c.settings = Some(ExportSettings {
                persona: s.persona,
                model: s.model,
                updated_at: from_ms(s.updated_at).map_err(corrupt)?,
            });
        }
    }
    for s in rows.summaries {
        if let Some(c) = convs.get_mut(&s.conversation_id) {
            c.summaries.push(ExportSummary {
                through_seq: s.through_seq,
                text: s.text,
                model: s.model,
                created_at: s.created_at,
            });
        }
    }
    let memories = rows
        .memories
        .into_iter()
        .map(|m| {
            let metadata = match serde_json::from_str(&m.metadata) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Err(corrupt(format!(
                        "memory {}: metadata is not an object",
                        m.id
                    )))
                }
            };
            Ok(ExportMemory {
                metadata,
                created_at: from_ms(m.created_at).map_err(corrupt)?,
                updated_at: from_ms(m.updated_at).map_err(corrupt)?,
                id: m.id,
                scope: m.scope,
                text: m.text,
                source: m.source,
            })
        })
        .collect::<Result<Vec<_>, OpsError>>()?;
    let automations = rows
        .automations
        .into_iter()
        .map(|a| {
            let action = serde_json::from_str(&a.action)
                .map_err(|e| corrupt(format!("automation {}: action: {e}", a.name)))?;
            Ok(ExportAutomation {
                action,
                next_run_at: a.next_run_at.map(from_ms).transpose().map_err(corrupt)?,
                created_at: from_ms(a.created_at).map_err(corrupt)?,
                updated_at: from_ms(a.updated_at).map_err(corrupt)?,
                id: a.id,
                name: a.name,
                rrule: a.rrule,
                dtstart: a.dtstart,
                tz: a.tz,
                paused: a.paused,
                misfire: a.misfire,
                catchup_limit: a.catchup_limit,
            })
        })
        .collect::<Result<Vec<_>, OpsError>>()?;
    let services = rows
        .services
        .into_iter()
        .map(|s| {
            let health = s
                .health
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt(format!("service {}: health: {e}", s.name)))?;
            let env = match serde_json::from_str(&s.env) {
                Ok(Value::Object(map)) => map,
                _ => return Err(corrupt(format!("service {}: env is not an object", s.name))),
            };
            Ok(ExportService {
                health,
                env,
                created_at: from_ms(s.created_at).map_err(corrupt)?,
                updated_at: from_ms(s.updated_at).map_err(corrupt)?,
                id: s.id,
                name: s.name,
                command: s.command,
                restart: s.restart,
                cwd: s.cwd,
                desired: s.desired,
            })
        })
        .collect::<Result<Vec<_>, OpsError>>()?;
    Ok(Export {
        format: EXPORT_FORMAT.to_owned(),
        version: EXPORT_VERSION,
        zocalo_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version: rows.schema_version,
        exported_at: Utc::now(),
        conversations: convs.into_values().collect(),
        memories,
        automations,
        services,
        skills: Vec::new(),
    })
}

/// [`export`] of `store` with the installed skills of `home`.
pub async fn export_home(home: &DataHome, store: &Store) -> Result<Export, OpsError> {
    let mut doc = export(store).await?;
    doc.skills = read_skills(&home.root().join("skills"))?;
    Ok(doc)
}

/// [`import`] into `store`, and the document's skills into `home`'s skills directory. A skill
/// folder the home already has counts as an existing record. The skills are written to a
/// staging folder first and moved into place after the database transaction commits.
pub async fn import_home(
    home: &DataHome,
    store: &Store,
    doc: &Export,
    on_conflict: OnConflict,
) -> Result<ImportReport, OpsError> {
    let target = home.root().join("skills");
    let (skills, existing) = skills::plan(&doc.skills, &target)?;
    if on_conflict == OnConflict::Refuse {
        if let Some(first) = existing.first() {
            return Err(OpsError::Exists {
                count: existing.len(),
                first: format!("skill {first}"),
            });
        }
    }
    let skip: &[String] = if on_conflict == OnConflict::Skip {
        &existing
    } else {
        &[]
    };
    let staged = skills::stage(&skills, skip, &target)?;
    let mut report = import(store, doc, on_conflict).await?;
    report.imported.skills = staged.install(on_conflict == OnConflict::Replace)?;
    report.skipped += skip.len();
    Ok(report)
}

/// Writes `export` into `store` in ONE transaction: on any error nothing is written. Records
/// the database already has (same id, or same name for automations and services, same key for
/// conversations) are refused, skipped or replaced per `on_conflict`.
pub async fn import(
    store: &Store,
    export: &Export,
    on_conflict: OnConflict,
) -> Result<ImportReport, OpsError> {
    let known = store.known_schema_version();
    if export.schema_version > known {
        return Err(OpsError::NewerSchema {
            what: "the export".into(),
            found: export.schema_version,
            known,
        });
    }
    export.validate()?;
    let backend = store.backend();
    let chunking = MemoryConfig::default();
    let now_ms = Utc::now().timestamp_millis();
    // SQLite: take the write lock up front; a read transaction that later writes fails with
    // "database is locked" (no busy wait) when another process wrote in between.
    let begin = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    let report = with_pool!(store.pool(), |p| async {
        let mut tx = p.begin_with(begin).await?;
        let count = |n: i64| n > 0;
        if on_conflict == OnConflict::Replace {
            sqlx::query(include_str!("sql/replace_forget_memories.sql"))
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            for table in [
                "memories",
                "conversations",
                "sched_automations",
                "svc_services",
            ] {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let mut report = ImportReport::default();
        let mut conflicts: Vec<String> = Vec::new();

        for c in &export.conversations {
            let mut exists = count(
                sqlx::query_scalar(include_str!("sql/exists_conversation.sql"))
                    .bind(&c.id)
                    .fetch_one(&mut *tx)
                    .await?,
            );
            if let Some(k) = &c.key {
                exists |= count(
                    sqlx::query_scalar(include_str!("sql/exists_key.sql"))
                        .bind(&k.key)
                        .fetch_one(&mut *tx)
                        .await?,
                );
            }
            if exists {
                conflicts.push(format!("conversation {}", c.id));
                continue;
            }
            sqlx::query(include_str!("sql/insert_conversation.sql"))
                .bind(&c.id)
                .bind(c.title.as_deref())
                .bind(Ts::of(c.created_at))
                .bind(Ts::of(c.updated_at))
                .execute(&mut *tx)
                .await?;
            for m in &c.messages {
                sqlx::query(include_str!("sql/insert_message.sql"))
                    .bind(&m.id)
                    .bind(&c.id)
                    .bind(m.seq)
                    .bind(&m.role)
                    .bind(&m.content)
                    .bind(m.tool_calls.as_ref().map(Json))
                    .bind(m.tool_call_id.as_deref())
                    .bind(m.is_error)
                    .bind(m.model.as_deref())
                    .bind(m.provider.as_deref())
                    .bind(m.input_tokens)
                    .bind(m.output_tokens)
                    .bind(Ts::of(m.created_at))
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(k) = &c.key {
                sqlx::query(include_str!("sql/insert_key.sql"))
                    .bind(&k.key)
                    .bind(&c.id)
                    .bind(Ts::of(k.created_at))
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(s) = &c.settings {
                sqlx::query(include_str!("sql/insert_settings.sql"))
                    .bind(&c.id)
                    .bind(s.persona.as_deref())
                    .bind(s.model.as_deref())
                    .bind(s.updated_at.timestamp_millis())
                    .execute(&mut *tx)
                    .await?;
            }
            for s in &c.summaries {
                sqlx::query(include_str!("sql/insert_summary.sql"))
                    .bind(&c.id)
                    .bind(s.through_seq)
                    .bind(&s.text)
                    .bind(s.model.as_deref())
                    .bind(Ts::of(s.created_at))
                    .execute(&mut *tx)
                    .await?;
            }
            report.imported.conversations += 1;
            report.imported.messages += c.messages.len();
        }

        let mut imported_memories: Vec<&str> = Vec::new();
        for m in &export.memories {
            let exists = count(
                sqlx::query_scalar(include_str!("sql/exists_memory.sql"))
                    .bind(&m.id)
                    .fetch_one(&mut *tx)
                    .await?,
            );
            if exists {
                conflicts.push(format!("memory {}", m.id));
                continue;
            }
            sqlx::query(include_str!("sql/insert_memory.sql"))
                .bind(&m.id)
                .bind(&m.scope)
                .bind(&m.text)
                .bind(Value::Object(m.metadata.clone()).to_string())
                .bind(m.source.as_deref())
                .bind(m.created_at.timestamp_millis())
                .bind(m.updated_at.timestamp_millis())
                .execute(&mut *tx)
                .await?;
            let texts =
                zocalo_memory::chunk::chunks(&m.text, chunking.chunk_words, chunking.chunk_overlap);
            for (seq, text) in texts.iter().enumerate() {
                sqlx::query(include_str!("sql/insert_chunk.sql"))
                    .bind(&m.id)
                    .bind(i32::try_from(seq).unwrap_or(i32::MAX))
                    .bind(text)
                    .execute(&mut *tx)
                    .await?;
            }
            imported_memories.push(&m.id);
        }
        report.imported.memories = imported_memories.len();

        for a in &export.automations {
            let exists = count(
                sqlx::query_scalar(include_str!("sql/exists_automation.sql"))
                    .bind(&a.id)
                    .bind(&a.name)
                    .fetch_one(&mut *tx)
                    .await?,
            );
            if exists {
                conflicts.push(format!("automation {}", a.name));
                continue;
            }
            sqlx::query(include_str!("sql/insert_automation.sql"))
                .bind(&a.id)
                .bind(&a.name)
                .bind(&a.rrule)
                .bind(&a.dtstart)
                .bind(&a.tz)
                .bind(a.action.to_string())
                .bind(a.paused)
                .bind(a.next_run_at.map(|t| t.timestamp_millis()))
                .bind(&a.misfire)
                .bind(i32::try_from(a.catchup_limit).unwrap_or(i32::MAX))
                .bind(a.created_at.timestamp_millis())
                .bind(a.updated_at.timestamp_millis())
                .execute(&mut *tx)
                .await?;
            report.imported.automations += 1;
        }

        for s in &export.services {
            let exists = count(
                sqlx::query_scalar(include_str!("sql/exists_service.sql"))
                    .bind(&s.id)
                    .bind(&s.name)
                    .fetch_one(&mut *tx)
                    .await?,
            );
            if exists {
                conflicts.push(format!("service {}", s.name));
                continue;
            }
            sqlx::query(include_str!("sql/insert_service.sql"))
                .bind(&s.id)
                .bind(&s.name)
                .bind(&s.command)
                .bind(&s.restart)
                .bind(s.health.as_ref().map(Value::to_string))
                .bind(Value::Object(s.env.clone()).to_string())
                .bind(s.cwd.as_deref())
                .bind(&s.desired)
                .bind(s.created_at.timestamp_millis())
                .bind(s.updated_at.timestamp_millis())
                .execute(&mut *tx)
                .await?;
            report.imported.services += 1;
        }

        if !conflicts.is_empty() && on_conflict != OnConflict::Skip {
            // Dropping the transaction rolls it back.
            return Ok(Err(OpsError::Exists {
                count: conflicts.len(),
                first: conflicts.swap_remove(0),
            }));
        }
        report.skipped = conflicts.len();

        // Last, as zocalo-memory's writers do: its lock is held from here to the commit so
        // change rows commit in seq order, and nothing is locked after it.
        if backend == Backend::Postgres {
            sqlx::query(include_str!("sql/memory_change_lock.sql"))
                .execute(&mut *tx)
                .await?;
        }
        for id in &imported_memories {
            sqlx::query(include_str!("sql/insert_memory_change.sql"))
                .bind(*id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        if backend == Backend::Postgres && !imported_memories.is_empty() {
            sqlx::query(include_str!("sql/memory_change_notify.sql"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(Ok(report))
    }
    .await)?;
    report
}

#[cfg(test)]
mod tests {

    #[test]
    fn memory_lock_matches_zocalo_memory() {
        // Two writers taking different locks would commit change rows out of seq order.
        let ours = include_str!("sql/memory_change_lock.sql");
        let theirs = include_str!("../../zocalo-memory/src/sql/change_lock.sql");
        let statement = |s: &str| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(statement(ours), statement(theirs));
        let ours = include_str!("sql/memory_change_notify.sql");
        let theirs = include_str!("../../zocalo-memory/src/sql/change_notify.sql");
        assert_eq!(statement(ours), statement(theirs));
    }
}
