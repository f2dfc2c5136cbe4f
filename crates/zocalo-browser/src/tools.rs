//! The browser as ask-loop tools: `browser_navigate`, `browser_snapshot`, `browser_click`,
//! `browser_type`, `browser_screenshot`, `browser_eval`.
//!
//! One Chromium serves every conversation; each conversation gets its own tab in its own
//! browser context (no shared cookies), kept between turns so a model can snapshot, click by
//! ref and read the result across calls. A tab unused for [`ToolsConfig::idle`] is closed,
//! and Chromium itself stops when no tab is left. Calls without a conversation (an MCP
//! client, a test) share one tab.
//!
//! Actions answer with a fresh snapshot plus the page's visible text, so the model sees what
//! its click did without another call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use zocalo_core::{Tool, ToolContext, ToolError, ToolSpec};

use crate::browser::{Browser, Tab, Target, TypeOptions};
use crate::error::BrowserError;
use crate::process::LaunchOptions;
use crate::run::png_size;

/// How the tools run the browser.
#[derive(Clone, Debug)]
pub struct ToolsConfig {
    pub launch: LaunchOptions,
    /// Close a conversation's tab after this long unused (and Chromium with the last tab).
    pub idle: Duration,
    /// Most tabs open at once; opening one more closes the least recently used.
    pub max_tabs: usize,
    /// Timeout of a navigation.
    pub navigation_timeout: Duration,
    /// Timeout of the other actions (finding an element, a script).
    pub action_timeout: Duration,
    /// Where `browser_screenshot` writes its PNGs.
    pub screenshot_dir: PathBuf,
    /// Visible text returned with a snapshot, at most this many characters.
    pub max_text_chars: usize,
}

impl ToolsConfig {
    pub fn new(screenshot_dir: PathBuf) -> Self {
        Self {
            launch: LaunchOptions::default(),
            idle: Duration::from_secs(300),
            max_tabs: 4,
            navigation_timeout: Duration::from_secs(30),
            action_timeout: Duration::from_secs(5),
            screenshot_dir,
            max_text_chars: 4000,
        }
    }
}

/// The shared state behind the tools: one browser, one tab per conversation.
pub struct Sessions {
    config: ToolsConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    browser: Option<Arc<Browser>>,
    tabs: HashMap<String, Arc<Mutex<Slot>>>,
    reaper: Option<tokio::task::JoinHandle<()>>,
}

struct Slot {
    tab: Option<Tab>,
    last_used: Instant,
}

impl Sessions {
    pub fn new(config: ToolsConfig) -> Arc<Self> {
        tracing::info!("zocalo-browser: a browser session manager was created");
        Arc::new(Self {
            config,
            state: Mutex::new(State::default()),
        })
    }

    /// The six tools, sharing these sessions.
    pub fn tools(self: &Arc<Self>) -> Vec<Arc<dyn Tool>> {
        [
            Kind::Navigate,
            Kind::Snapshot,
            Kind::Click,
            Kind::Type,
            Kind::Screenshot,
            Kind::Eval,
        ]
        .into_iter()
        .map(|kind| {
            Arc::new(BrowserTool {
                kind,
                sessions: self.clone(),
            }) as Arc<dyn Tool>
        })
        .collect()
    }

    /// Open tabs (conversations with a live browser session).
    pub async fn open_tabs(&self) -> usize {
        self.state.lock().await.tabs.len()
    }

    /// The Chromium process id, while one runs.
    pub async fn browser_pid(&self) -> Option<u32> {
        self.state.lock().await.browser.as_ref().map(|b| b.pid())
    }

    /// Close every tab and stop Chromium now.
    pub async fn close_all(&self) {
        let (browser, tabs) = {
            let mut st = self.state.lock().await;
            if let Some(r) = st.reaper.take() {
                r.abort();
            }
            (st.browser.take(), std::mem::take(&mut st.tabs))
        };
        drop(tabs);
        drop(browser);
    }

    /// The slot of `key`'s tab, opening Chromium and the tab if needed.
    async fn slot(self: &Arc<Self>, key: &str) -> Result<Arc<Mutex<Slot>>, BrowserError> {
        let mut st = self.state.lock().await;
        if let Some(slot) = st.tabs.get(key) {
            return Ok(slot.clone());
        }
        if !st.browser.as_ref().is_some_and(|b| b.is_alive()) {
            st.tabs.clear();
            st.browser = Some(Arc::new(Browser::launch(&self.config.launch).await?));
        }
        if st.tabs.len() >= self.config.max_tabs.max(1) {
            // Evict the least recently used idle tab.
            let mut oldest: Option<(String, Instant)> = None;
            for (k, s) in &st.tabs {
                if let Ok(s) = s.try_lock() {
                    if oldest.as_ref().is_none_or(|(_, t)| s.last_used < *t) {
                        oldest = Some((k.clone(), s.last_used));
                    }
                }
            }
            if let Some((k, _)) = oldest {
                if let Some(slot) = st.tabs.remove(&k) {
                    close_slot(st.browser.clone(), slot).await;
                }
            }
        }
        let browser = st
            .browser
            .clone()
            .ok_or_else(|| BrowserError::Launch("the browser went away".into()))?;
        let tab = match browser.new_tab().await {
            Ok(t) => t,
            Err(e) => {
                // A dead Chromium (crashed, killed): start over on the next call.
                st.browser = None;
                st.tabs.clear();
                return Err(e);
            }
        };
        let slot = Arc::new(Mutex::new(Slot {
            tab: Some(tab),
            last_used: Instant::now(),
        }));
        st.tabs.insert(key.to_owned(), slot.clone());
        if st.reaper.as_ref().is_none_or(|r| r.is_finished()) {
            st.reaper = Some(tokio::spawn(reap(Arc::downgrade(self))));
        }
        Ok(slot)
    }
}

async fn close_slot(browser: Option<Arc<Browser>>, slot: Arc<Mutex<Slot>>) {
    let tab = slot.lock().await.tab.take();
    if let (Some(b), Some(tab)) = (browser, tab) {
        b.close_tab(tab).await;
    }
}

/// Close idle tabs; stop Chromium when none is left. Ends with the sessions or the browser.
async fn reap(sessions: Weak<Sessions>) {
    loop {
        let period = match sessions.upgrade() {
            Some(s) => {
                (s.config.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
            }
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(s) = sessions.upgrade() else { return };
        let mut st = s.state.lock().await;
        let mut idle = Vec::new();
        for (k, slot) in &st.tabs {
            if let Ok(slot) = slot.try_lock() {
                if slot.last_used.elapsed() >= s.config.idle {
                    idle.push(k.clone());
                }
            }
        }
        for k in idle {
            if let Some(slot) = st.tabs.remove(&k) {
                tracing::debug!(conversation = %k, "closing an idle browser tab");
                close_slot(st.browser.clone(), slot).await;
            }
        }
        if st.tabs.is_empty() {
            if let Some(b) = st.browser.take() {
                tracing::debug!(pid = b.pid(), "no browser tabs left: stopping Chromium");
            }
            st.reaper = None;
            return;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Navigate,
    Snapshot,
    Click,
    Type,
    Screenshot,
    Eval,
}

struct BrowserTool {
    kind: Kind,
    sessions: Arc<Sessions>,
}

fn target_schema() -> Value {
    json!({
        "ref": {"type": "string", "description": "Element ref from the latest browser_snapshot, e.g. \"e3\" (preferred)."},
        "selector": {"type": "string", "description": "CSS selector, when no ref fits."}
    })
}

fn spec(name: &str, description: &str, properties: Value, required: &[&str]) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters: json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        }),
    }
}

fn recoverable(e: BrowserError) -> ToolError {
    ToolError::Recoverable(e.to_string())
}

fn bad_args(msg: impl Into<String>) -> ToolError {
    ToolError::Recoverable(msg.into())
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Option<&'a str> {
    args.get(key).and_then(|v| v.as_str())
}

fn target_arg(args: &Value) -> Result<Target, ToolError> {
    match (str_arg(args, "ref"), str_arg(args, "selector")) {
        (Some(r), None) => Ok(Target::Ref(r.trim().to_owned())),
        (None, Some(s)) if !s.trim().is_empty() => Ok(Target::Css(s.to_owned())),
        (Some(_), Some(_)) => Err(bad_args("give either \"ref\" or \"selector\", not both")),
        _ => Err(bad_args(
            "say which element: \"ref\" from browser_snapshot (e.g. \"e3\") or a CSS \"selector\"",
        )),
    }
}

impl BrowserTool {
    /// What the model sees after a page changes: the snapshot (refs) and the visible text.
    async fn page_report(&self, tab: &mut Tab, headline: &str) -> Result<String, ToolError> {
        let cfg = &self.sessions.config;
        let snap = tab.snapshot().await.map_err(recoverable)?;
        let text = tab
            .text(cfg.max_text_chars, cfg.action_timeout)
            .await
            .unwrap_or_default();
        Ok(format!(
            "{headline}\n{}\nvisible text:\n{}",
            snap.render(),
            if text.trim().is_empty() {
                "(none)"
            } else {
                text.trim()
            }
        ))
    }

    async fn run(&self, key: &str, args: &Value) -> Result<String, ToolError> {
        let cfg = &self.sessions.config;
        // Check the arguments before starting anything.
        let target = match self.kind {
            Kind::Click | Kind::Type => Some(target_arg(args)?),
            _ => None,
        };
        let slot = self.sessions.slot(key).await.map_err(recoverable)?;
        let mut slot = slot.lock().await;
        slot.last_used = Instant::now();
        let Some(tab) = slot.tab.as_mut() else {
            return Err(bad_args(
                "this browser tab was just closed; call the tool again",
            ));
        };
        let out = match self.kind {
            Kind::Navigate => {
                let url = str_arg(args, "url").ok_or_else(|| bad_args("missing \"url\""))?;
                let nav = tab
                    .goto(url, cfg.navigation_timeout)
                    .await
                    .map_err(recoverable)?;
                let status = nav
                    .status
                    .map(|s| format!(" (HTTP {s})"))
                    .unwrap_or_default();
                self.page_report(tab, &format!("navigated to {}{status}", nav.url))
                    .await
            }
            Kind::Snapshot => self.page_report(tab, "page snapshot").await,
            Kind::Click => {
                let target = target.ok_or_else(|| bad_args("missing element"))?;
                tab.click(&target, cfg.action_timeout)
                    .await
                    .map_err(recoverable)?;
                self.page_report(tab, &format!("clicked {target}")).await
            }
            Kind::Type => {
                let target = target.ok_or_else(|| bad_args("missing element"))?;
                let text = str_arg(args, "text").ok_or_else(|| bad_args("missing \"text\""))?;
                let opts = TypeOptions {
                    append: args.get("append").and_then(Value::as_bool).unwrap_or(false),
                    submit: args.get("submit").and_then(Value::as_bool).unwrap_or(false),
                };
                tab.type_text(&target, text, opts, cfg.action_timeout)
                    .await
                    .map_err(recoverable)?;
                self.page_report(tab, &format!("typed into {target}")).await
            }
            Kind::Screenshot => {
                let full_page = args
                    .get("full_page")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let png = tab.screenshot(full_page).await.map_err(recoverable)?;
                std::fs::create_dir_all(&cfg.screenshot_dir).map_err(|e| {
                    ToolError::Fatal(format!("{}: {e}", cfg.screenshot_dir.display()))
                })?;
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default();
                let safe_key: String = key
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '_' {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect();
                let path = cfg.screenshot_dir.join(format!("{safe_key}-{stamp}.png"));
                std::fs::write(&path, &png)
                    .map_err(|e| ToolError::Fatal(format!("{}: {e}", path.display())))?;
                let (w, h) = png_size(&png).unwrap_or((0, 0));
                Ok(format!(
                    "saved a {w}x{h} PNG screenshot of {} to {}",
                    tab.url().await.unwrap_or_default(),
                    path.display()
                ))
            }
            Kind::Eval => {
                let expression = str_arg(args, "expression")
                    .filter(|e| !e.trim().is_empty())
                    .ok_or_else(|| bad_args("missing \"expression\""))?;
                let v = tab
                    .eval(expression, cfg.action_timeout)
                    .await
                    .map_err(recoverable)?;
                Ok(serde_json::to_string(&v).unwrap_or_else(|_| "null".into()))
            }
        };
        slot.last_used = Instant::now();
        out
    }
}

#[async_trait]
impl Tool for BrowserTool {
    fn spec(&self) -> ToolSpec {
        match self.kind {
            Kind::Navigate => spec(
                "browser_navigate",
                "Open a URL in your browser tab (headless Chromium). Returns the page's interactive elements with refs and its visible text.",
                json!({"url": {"type": "string", "description": "Absolute URL, e.g. https://example.com"}}),
                &["url"],
            ),
            Kind::Snapshot => spec(
                "browser_snapshot",
                "List the current page's interactive and landmark elements as `ref role \"name\"` lines (refs like e3 are for browser_click / browser_type), plus its visible text.",
                json!({}),
                &[],
            ),
            Kind::Click => spec(
                "browser_click",
                "Click an element of the current page, by ref from the latest snapshot (or a CSS selector). Returns the page afterwards.",
                target_schema(),
                &[],
            ),
            Kind::Type => {
                let mut props = target_schema();
                props["text"] = json!({"type": "string", "description": "Text to type; replaces the field's content."});
                props["submit"] = json!({"type": "boolean", "description": "Press Enter afterwards (submits the form)."});
                props["append"] = json!({"type": "boolean", "description": "Keep the current content and add to it."});
                spec(
                    "browser_type",
                    "Type text into a field of the current page, by ref from the latest snapshot (or a CSS selector). Returns the page afterwards.",
                    props,
                    &["text"],
                )
            }
            Kind::Screenshot => spec(
                "browser_screenshot",
                "Save a PNG screenshot of the current page and return where it was saved.",
                json!({"full_page": {"type": "boolean", "description": "The whole scrollable page, not just the viewport."}}),
                &[],
            ),
            Kind::Eval => spec(
                "browser_eval",
                "Evaluate a JavaScript expression in the current page; returns its value as JSON (promises are awaited).",
                json!({"expression": {"type": "string"}}),
                &["expression"],
            ),
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, ToolError> {
        self.call_with(&ToolContext::default(), arguments).await
    }

    async fn call_with(&self, ctx: &ToolContext, arguments: Value) -> Result<String, ToolError> {
        let key = ctx
            .conversation
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "shared".into());
        self.run(&key, &arguments).await
    }
}
