//! A running Chromium ([`Browser`]) and one page in it ([`Tab`]), with the actions steps and
//! tools are made of. Every action takes a timeout and fails with a [`BrowserError`] that
//! names what it waited for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::accessibility::{
    EnableParams as AxEnableParams, GetFullAxTreeParams,
};
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::dom::{
    BackendNodeId, DescribeNodeParams, FocusParams, GetContentQuadsParams, ResolveNodeParams,
    ScrollIntoViewIfNeededParams,
};
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, DispatchMouseEventParams, DispatchMouseEventType,
    InsertTextParams, MouseButton,
};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams, DisposeBrowserContextParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    CallFunctionOnParams, EvaluateParams, ReleaseObjectParams, RemoteObject, RemoteObjectId,
    RemoteObjectType,
};
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use serde_json::Value;

use crate::error::{fmt_duration, BrowserError, Result};
use crate::process::{ChromiumProcess, LaunchOptions};
use crate::snapshot::{elements_from_ax_tree, Snapshot, SnapshotElement};

/// How often waits re-check the page.
const POLL: Duration = Duration::from_millis(50);

/// A headless Chromium and the CDP connection to it. Dropping it kills Chromium.
pub struct Browser {
    cdp: Arc<chromiumoxide::Browser>,
    handler: tokio::task::JoinHandle<()>,
    // Declared last: dropped after the connection, which then closes without noise.
    process: ChromiumProcess,
}

impl Browser {
    /// Start Chromium (see [`LaunchOptions`]) and connect to it.
    pub async fn launch(opts: &LaunchOptions) -> Result<Self> {
        let process = ChromiumProcess::spawn(opts).await?;
        let config = HandlerConfig {
            viewport: Some(Viewport {
                width: opts.width,
                height: opts.height,
                device_scale_factor: Some(1.0),
                emulating_mobile: false,
                is_landscape: false,
                has_touch: false,
            }),
            ..HandlerConfig::default()
        };
        let (cdp, mut handler) =
            chromiumoxide::Browser::connect_with_config(process.ws_url().to_owned(), config)
                .await
                .map_err(|e| BrowserError::Launch(format!("cannot connect to DevTools: {e}")))?;
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    // A closed socket ends the stream; anything else is worth a debug line.
                    tracing::debug!("cdp handler: {e}");
                }
            }
        });
        Ok(Self {
            cdp: Arc::new(cdp),
            handler,
            process,
        })
    }

    /// The browser process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the connection to Chromium is up (it ends when Chromium exits).
    pub fn is_alive(&self) -> bool {
        !self.handler.is_finished()
    }

    /// A new page in a browser context of its own: no cookies or storage shared with other
    /// tabs.
    pub async fn new_tab(&self) -> Result<Tab> {
        let context = self
            .cdp
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .map_err(BrowserError::protocol)?;
        let page = open_page(&self.cdp, &context).await?;
        Ok(Tab {
            page,
            cdp: self.cdp.clone(),
            context,
            refs: Vec::new(),
        })
    }

    /// Close a tab and its browser context.
    pub async fn close_tab(&self, tab: Tab) {
        let Tab { page, context, .. } = tab;
        let _ = page.close().await;
        let _ = self
            .cdp
            .execute(DisposeBrowserContextParams::new(context))
            .await;
    }
}

async fn open_page(
    cdp: &chromiumoxide::Browser,
    context: &BrowserContextId,
) -> Result<chromiumoxide::Page> {
    let params = CreateTargetParams::builder()
        .url("about:blank")
        .browser_context_id(context.clone())
        .build()
        .map_err(BrowserError::Protocol)?;
    cdp.new_page(params).await.map_err(BrowserError::protocol)
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.handler.abort();
    }
}

/// What a navigation ended at.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Navigated {
    pub url: String,
    /// HTTP status of the main document, when the page was fetched over HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub title: String,
}

/// An element to act on: a CSS selector, or a ref from the latest snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Css(String),
    Ref(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Css(s) => write!(f, "{s:?}"),
            Target::Ref(r) => write!(f, "ref {r}"),
        }
    }
}

/// What `wait_for` waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitCondition {
    /// An element in a state.
    Element { target: Target, state: WaitState },
    /// Text anywhere in the page's visible text.
    Text(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitState {
    /// In the DOM, rendered with a non-empty box, not `visibility: hidden`.
    Visible,
    /// In the DOM.
    Attached,
    /// Not in the DOM, or not visible.
    Hidden,
}

impl WaitState {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitState::Visible => "visible",
            WaitState::Attached => "attached",
            WaitState::Hidden => "hidden",
        }
    }
}

/// Options of [`Tab::type_text`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeOptions {
    /// Keep what the field holds and add to it (default: replace it).
    pub append: bool,
    /// Press Enter afterwards (submits a form).
    pub submit: bool,
}

/// JS: is `el` rendered and visible?
const VISIBLE_FN: &str = "function(el){ if (!el || !el.isConnected) return false; \
const s = getComputedStyle(el); if (s.visibility === 'hidden' || s.display === 'none') return false; \
const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; }";

/// One page. Holds the refs of its latest snapshot.
pub struct Tab {
    page: chromiumoxide::Page,
    cdp: Arc<chromiumoxide::Browser>,
    context: BrowserContextId,
    refs: Vec<(String, BackendNodeId)>,
}

impl Tab {
    /// Navigate and wait for the load event.
    pub async fn goto(&mut self, url: &str, timeout: Duration) -> Result<Navigated> {
        let parsed = validate_url(url)?;
        self.refs.clear();
        match tokio::time::timeout(timeout, self.page.goto(parsed.as_str())).await {
            Err(_) => {
                // chromiumoxide runs one navigation per page at a time: the abandoned one
                // would hold up the next. Start over with a fresh page in the same context
                // (cookies kept).
                let fresh = open_page(&self.cdp, &self.context).await?;
                let stuck = std::mem::replace(&mut self.page, fresh);
                let _ = stuck.close().await;
                return Err(BrowserError::Timeout {
                    what: format!("{url} did not finish loading"),
                    waited: timeout,
                });
            }
            Ok(Err(CdpError::ChromeMessage(reason))) => {
                return Err(classify_net_error(url, reason))
            }
            Ok(Err(CdpError::Timeout)) => {
                return Err(BrowserError::Timeout {
                    what: format!("{url} did not finish loading"),
                    waited: timeout,
                })
            }
            Ok(Err(e)) => {
                return Err(BrowserError::Navigation {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })
            }
            Ok(Ok(_)) => {}
        }
        let status = self
            .eval_value(
                "(() => { const n = performance.getEntriesByType('navigation')[0]; \
                 return n && n.responseStatus ? n.responseStatus : null; })()",
                timeout,
            )
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .and_then(|s| u16::try_from(s).ok());
        Ok(Navigated {
            url: self.url().await?,
            status,
            title: self.title().await?,
        })
    }

    /// The page's URL.
    pub async fn url(&self) -> Result<String> {
        Ok(self
            .page
            .url()
            .await
            .map_err(BrowserError::protocol)?
            .unwrap_or_default())
    }

    /// The page's title.
    pub async fn title(&self) -> Result<String> {
        Ok(self
            .page
            .get_title()
            .await
            .map_err(BrowserError::protocol)?
            .unwrap_or_default())
    }

    /// Click the element's centre with real mouse events (scrolled into view first).
    pub async fn click(&mut self, target: &Target, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let node = self.resolve(target, deadline, timeout, "click").await?;
        let _ = self
            .page
            .execute(ScrollIntoViewIfNeededParams {
                backend_node_id: Some(node),
                ..Default::default()
            })
            .await;
        let quads = self
            .page
            .execute(GetContentQuadsParams {
                backend_node_id: Some(node),
                ..Default::default()
            })
            .await
            .map_err(|e| BrowserError::NotInteractable {
                action: "click",
                target: target.to_string(),
                reason: format!("it has no layout box ({e})"),
            })?;
        let Some((x, y)) = quads.result.quads.iter().find_map(|q| centre(q.inner())) else {
            return Err(BrowserError::NotInteractable {
                action: "click",
                target: target.to_string(),
                reason: "it is not rendered (no layout box)".into(),
            });
        };
        for (kind, buttons) in [
            (DispatchMouseEventType::MouseMoved, 0),
            (DispatchMouseEventType::MousePressed, 1),
            (DispatchMouseEventType::MouseReleased, 0),
        ] {
            let mut ev = DispatchMouseEventParams::new(kind.clone(), x, y);
            if kind != DispatchMouseEventType::MouseMoved {
                ev.button = Some(MouseButton::Left);
                ev.click_count = Some(1);
            }
            ev.buttons = Some(buttons);
            self.page
                .execute(ev)
                .await
                .map_err(BrowserError::protocol)?;
        }
        self.settle(deadline).await;
        Ok(())
    }

    /// Focus the element and type `text` into it (replacing its content unless `append`).
    pub async fn type_text(
        &mut self,
        target: &Target,
        text: &str,
        opts: TypeOptions,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let node = self.resolve(target, deadline, timeout, "type into").await?;
        self.page
            .execute(FocusParams {
                backend_node_id: Some(node),
                ..Default::default()
            })
            .await
            .map_err(|e| BrowserError::NotInteractable {
                action: "type into",
                target: target.to_string(),
                reason: format!("it cannot take focus ({})", cdp_message(&e)),
            })?;
        if !opts.append {
            let object = self.object_of(node, target).await?;
            // Select the current content so the typed text replaces it; an empty text then
            // deletes it.
            let cleared = self
                .call_on(
                    &object,
                    "function(clear){ if (typeof this.select === 'function' && 'value' in this) { this.select(); } \
                     else if (this.isContentEditable) { const r = document.createRange(); r.selectNodeContents(this); \
                     const s = getSelection(); s.removeAllRanges(); s.addRange(r); } \
                     if (clear) document.execCommand('delete'); return true; }",
                    vec![Value::Bool(text.is_empty())],
                )
                .await;
            self.release(object).await;
            cleared?;
        }
        if !text.is_empty() {
            self.page
                .execute(InsertTextParams::new(text))
                .await
                .map_err(BrowserError::protocol)?;
        }
        if opts.submit {
            for kind in [DispatchKeyEventType::KeyDown, DispatchKeyEventType::KeyUp] {
                let mut ev = DispatchKeyEventParams::new(kind.clone());
                ev.key = Some("Enter".into());
                ev.code = Some("Enter".into());
                ev.windows_virtual_key_code = Some(13);
                ev.native_virtual_key_code = Some(13);
                if kind == DispatchKeyEventType::KeyDown {
                    ev.text = Some("\r".into());
                    ev.unmodified_text = Some("\r".into());
                }
                self.page
                    .execute(ev)
                    .await
                    .map_err(BrowserError::protocol)?;
            }
            self.settle(deadline).await;
        }
        Ok(())
    }

    /// Wait until `condition` holds; returns how long that took.
    pub async fn wait_for(
        &mut self,
        condition: &WaitCondition,
        timeout: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            let holds = match condition {
                WaitCondition::Text(text) => {
                    let js = format!(
                        "(() => !!document.body && document.body.innerText.includes({}))()",
                        json_str(text)
                    );
                    self.eval_value(&js, timeout).await.ok() == Some(Value::Bool(true))
                }
                WaitCondition::Element { target, state } => {
                    self.element_state(target, *state).await?
                }
            };
            if holds {
                return Ok(start.elapsed());
            }
            if Instant::now() >= deadline {
                let what = match condition {
                    WaitCondition::Text(t) => format!("text {t:?} did not appear"),
                    WaitCondition::Element { target, state } => match state {
                        WaitState::Hidden => format!("{target} did not go away"),
                        WaitState::Attached => format!("no element matches {target}"),
                        WaitState::Visible => format!("no visible element matches {target}"),
                    },
                };
                return Err(BrowserError::Timeout {
                    what,
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Evaluate a JavaScript expression (promises are awaited); its value as JSON
    /// (`undefined` is `null`; values JSON cannot hold, like `NaN`, come back as strings).
    pub async fn eval(&mut self, expression: &str, timeout: Duration) -> Result<Value> {
        self.eval_value(expression, timeout).await
    }

    /// A PNG of the viewport, or of the whole page with `full_page`.
    pub async fn screenshot(&mut self, full_page: bool) -> Result<Vec<u8>> {
        self.page
            .screenshot(
                ScreenshotParams::builder()
                    .format(CaptureScreenshotFormat::Png)
                    .full_page(full_page)
                    .build(),
            )
            .await
            .map_err(BrowserError::protocol)
    }

    /// Snapshot the page's interactive and landmark elements. Its refs replace the previous
    /// snapshot's.
    pub async fn snapshot(&mut self) -> Result<Snapshot> {
        let _ = self.page.execute(AxEnableParams::default()).await;
        let tree = self
            .page
            .execute(GetFullAxTreeParams::default())
            .await
            .map_err(BrowserError::protocol)?;
        let nodes: Vec<Value> = tree
            .result
            .nodes
            .iter()
            .filter_map(|n| serde_json::to_value(n).ok())
            .collect();
        let found = elements_from_ax_tree(&nodes);
        self.refs = found
            .iter()
            .map(|(e, b)| (e.reference.clone(), BackendNodeId::new(*b)))
            .collect();
        let elements: Vec<SnapshotElement> = found.into_iter().map(|(e, _)| e).collect();
        Ok(Snapshot {
            url: self.url().await?,
            title: self.title().await?,
            elements,
        })
    }

    /// The page's visible text, at most `max_chars` characters.
    pub async fn text(&mut self, max_chars: usize, timeout: Duration) -> Result<String> {
        let v = self
            .eval_value("document.body ? document.body.innerText : ''", timeout)
            .await?;
        let text = v.as_str().unwrap_or_default();
        let mut out: String = text.chars().take(max_chars).collect();
        if text.chars().count() > max_chars {
            out.push_str("\n… (cut)");
        }
        Ok(out)
    }

    // ---- internals ----

    /// After an action that may navigate: give the page a moment to start, then wait (within
    /// the step's deadline, at most 2 s) until the document has loaded.
    async fn settle(&mut self, deadline: Instant) {
        tokio::time::sleep(POLL).await;
        let cap = deadline.min(Instant::now() + Duration::from_secs(2));
        while Instant::now() < cap {
            let ready = self
                .eval_value("document.readyState", Duration::from_secs(1))
                .await
                .ok();
            if ready == Some(Value::String("complete".into())) {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn eval_value(&self, expression: &str, timeout: Duration) -> Result<Value> {
        let params = EvaluateParams {
            expression: expression.to_owned(),
            return_by_value: Some(true),
            await_promise: Some(true),
            user_gesture: Some(true),
            ..EvaluateParams::new(expression)
        };
        let resp = match tokio::time::timeout(timeout, self.page.execute(params)).await {
            Err(_) => {
                return Err(BrowserError::Timeout {
                    what: "the script did not finish".into(),
                    waited: timeout,
                })
            }
            Ok(r) => r.map_err(BrowserError::protocol)?,
        };
        if let Some(ex) = &resp.result.exception_details {
            let msg = ex
                .exception
                .as_ref()
                .and_then(|e| {
                    e.description
                        .clone()
                        .or_else(|| e.value.as_ref().map(|v| v.to_string()))
                })
                .unwrap_or_else(|| ex.text.clone());
            return Err(BrowserError::JavaScript(
                msg.lines().next().unwrap_or_default().to_owned(),
            ));
        }
        Ok(value_of(&resp.result.result))
    }

    /// Find the element's DOM node, waiting (until `deadline`) for a CSS selector to match
    /// a visible element.
    async fn resolve(
        &mut self,
        target: &Target,
        deadline: Instant,
        timeout: Duration,
        action: &'static str,
    ) -> Result<BackendNodeId> {
        match target {
            Target::Ref(r) => {
                let node = self
                    .refs
                    .iter()
                    .find(|(name, _)| name == r)
                    .map(|(_, n)| *n)
                    .ok_or_else(|| BrowserError::UnknownRef(r.clone()))?;
                let object = self.object_of(node, target).await?;
                let connected = self
                    .call_on(&object, "function(){ return this.isConnected; }", vec![])
                    .await;
                self.release(object).await;
                if connected? != Value::Bool(true) {
                    return Err(BrowserError::StaleRef(r.clone()));
                }
                Ok(node)
            }
            Target::Css(selector) => loop {
                let js = format!(
                    "(() => {{ const el = document.querySelector({}); if (!el) return 'missing'; \
                     return ({VISIBLE_FN})(el) ? el : 'hidden'; }})()",
                    json_str(selector)
                );
                let found = match self.eval_object(&js).await {
                    Err(BrowserError::JavaScript(reason)) => {
                        return Err(BrowserError::InvalidSelector {
                            selector: selector.clone(),
                            reason,
                        })
                    }
                    Err(e) => return Err(e),
                    Ok(found) => found,
                };
                if let Found::Element(object) = found {
                    let described = self
                        .page
                        .execute(DescribeNodeParams {
                            object_id: Some(object.clone()),
                            ..Default::default()
                        })
                        .await;
                    self.release(object).await;
                    let node = described.map_err(BrowserError::protocol)?;
                    return Ok(node.result.node.backend_node_id);
                }
                if Instant::now() >= deadline {
                    let what = match found {
                        Found::Hidden => format!(
                            "the element matching {selector:?} is not visible, so could not {action} it"
                        ),
                        _ => format!("no element matches {selector:?}"),
                    };
                    return Err(BrowserError::Timeout {
                        what,
                        waited: timeout,
                    });
                }
                tokio::time::sleep(POLL).await;
            },
        }
    }

    /// Evaluate `js`, which returns an element or a string saying why not.
    async fn eval_object(&self, js: &str) -> Result<Found> {
        let resp = match self.page.execute(EvaluateParams::new(js)).await {
            Ok(r) => r,
            // Mid-navigation the execution context can vanish: nothing found yet.
            Err(CdpError::Chrome(_)) => return Ok(Found::Missing),
            Err(e) => return Err(BrowserError::protocol(e)),
        };
        if let Some(ex) = &resp.result.exception_details {
            let msg = ex
                .exception
                .as_ref()
                .and_then(|e| e.description.clone())
                .unwrap_or_else(|| ex.text.clone());
            return Err(BrowserError::JavaScript(
                msg.lines().next().unwrap_or_default().to_owned(),
            ));
        }
        let obj = resp.result.result;
        Ok(match (obj.r#type, obj.object_id) {
            (RemoteObjectType::Object, Some(id)) => Found::Element(id),
            _ if obj.value == Some(Value::String("hidden".into())) => Found::Hidden,
            _ => Found::Missing,
        })
    }

    async fn element_state(&mut self, target: &Target, state: WaitState) -> Result<bool> {
        let visible_js = format!("({VISIBLE_FN})(this)");
        let (exists, visible) = match target {
            Target::Css(selector) => {
                let js = format!(
                    "(() => {{ const el = document.querySelector({}); return [!!el, ({VISIBLE_FN})(el)]; }})()",
                    json_str(selector)
                );
                match self.eval_value(&js, Duration::from_secs(5)).await {
                    Ok(Value::Array(v)) => (
                        v.first() == Some(&Value::Bool(true)),
                        v.get(1) == Some(&Value::Bool(true)),
                    ),
                    Err(BrowserError::JavaScript(reason)) => {
                        return Err(BrowserError::InvalidSelector {
                            selector: selector.clone(),
                            reason,
                        })
                    }
                    // Mid-navigation the context can vanish: not there yet.
                    _ => (false, false),
                }
            }
            Target::Ref(r) => {
                let node = self
                    .refs
                    .iter()
                    .find(|(name, _)| name == r)
                    .map(|(_, n)| *n)
                    .ok_or_else(|| BrowserError::UnknownRef(r.clone()))?;
                match self.object_of(node, target).await {
                    Ok(object) => {
                        let v = self
                            .call_on(
                                &object,
                                &format!(
                                    "function(){{ return [this.isConnected, {visible_js}]; }}"
                                ),
                                vec![],
                            )
                            .await;
                        self.release(object).await;
                        match v {
                            Ok(Value::Array(v)) => (
                                v.first() == Some(&Value::Bool(true)),
                                v.get(1) == Some(&Value::Bool(true)),
                            ),
                            _ => (false, false),
                        }
                    }
                    Err(_) => (false, false),
                }
            }
        };
        Ok(match state {
            WaitState::Attached => exists,
            WaitState::Visible => visible,
            WaitState::Hidden => !visible,
        })
    }

    async fn object_of(&self, node: BackendNodeId, target: &Target) -> Result<RemoteObjectId> {
        let resolved = self
            .page
            .execute(ResolveNodeParams {
                backend_node_id: Some(node),
                ..Default::default()
            })
            .await;
        match resolved {
            Ok(r) => r.result.object.object_id.ok_or_else(|| match target {
                Target::Ref(r) => BrowserError::StaleRef(r.clone()),
                Target::Css(_) => BrowserError::Protocol("element has no object id".into()),
            }),
            Err(_) => Err(match target {
                Target::Ref(r) => BrowserError::StaleRef(r.clone()),
                Target::Css(s) => BrowserError::Protocol(format!("element {s:?} vanished")),
            }),
        }
    }

    async fn call_on(
        &self,
        object: &RemoteObjectId,
        function: &str,
        args: Vec<Value>,
    ) -> Result<Value> {
        let mut params = CallFunctionOnParams::new(function);
        params.object_id = Some(object.clone());
        params.return_by_value = Some(true);
        params.await_promise = Some(true);
        params.arguments = Some(
            args.into_iter()
                .map(|v| chromiumoxide::cdp::js_protocol::runtime::CallArgument {
                    value: Some(v),
                    ..Default::default()
                })
                .collect(),
        );
        let resp = self
            .page
            .execute(params)
            .await
            .map_err(BrowserError::protocol)?;
        if let Some(ex) = &resp.result.exception_details {
            return Err(BrowserError::JavaScript(ex.text.clone()));
        }
        Ok(value_of(&resp.result.result))
    }

    async fn release(&self, object: RemoteObjectId) {
        let _ = self.page.execute(ReleaseObjectParams::new(object)).await;
    }
}

enum Found {
    Element(RemoteObjectId),
    Hidden,
    Missing,
}

/// A JavaScript string literal for `s`.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn value_of(obj: &RemoteObject) -> Value {
    if let Some(v) = &obj.value {
        return v.clone();
    }
    if let Some(u) = &obj.unserializable_value {
        return Value::String(u.inner().clone());
    }
    Value::Null
}

fn cdp_message(e: &CdpError) -> String {
    match e {
        CdpError::Chrome(err) => err.message.clone(),
        other => other.to_string(),
    }
}

/// Centre of a quad (x1,y1,...,x4,y4) with a non-zero area.
fn centre(q: &[f64]) -> Option<(f64, f64)> {
    if q.len() != 8 {
        return None;
    }
    let xs = [q[0], q[2], q[4], q[6]];
    let ys = [q[1], q[3], q[5], q[7]];
    let (minx, maxx) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (miny, maxy) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
    (maxx - minx >= 1.0 && maxy - miny >= 1.0)
        .then(|| (xs.iter().sum::<f64>() / 4.0, ys.iter().sum::<f64>() / 4.0))
}

/// URLs we navigate to: absolute, with a scheme a page can be loaded from.
pub fn validate_url(url: &str) -> Result<url::Url> {
    let bad = |reason: &str| BrowserError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = url::Url::parse(url.trim()).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            bad("it has no scheme: write it in full, e.g. https://example.com")
        }
        other => bad(&other.to_string()),
    })?;
    match parsed.scheme() {
        "http" | "https" | "file" | "about" | "data" => Ok(parsed),
        other => Err(bad(&format!(
            "scheme {other:?} is not supported (use http, https, file, about or data)"
        ))),
    }
}

/// Chromium's `net::ERR_*` text: "could not connect at all" vs. "something else went wrong".
fn classify_net_error(url: &str, reason: String) -> BrowserError {
    const UNREACHABLE: &[&str] = &[
        "ERR_CONNECTION_REFUSED",
        "ERR_NAME_NOT_RESOLVED",
        "ERR_NAME_RESOLUTION_FAILED",
        "ERR_ADDRESS_UNREACHABLE",
        "ERR_ADDRESS_INVALID",
        "ERR_CONNECTION_TIMED_OUT",
        "ERR_TIMED_OUT",
        "ERR_INTERNET_DISCONNECTED",
        "ERR_NETWORK_UNREACHABLE",
        "ERR_PROXY_CONNECTION_FAILED",
        "ERR_FILE_NOT_FOUND",
    ];
    if UNREACHABLE.iter().any(|code| reason.contains(code)) {
        BrowserError::Unreachable {
            url: url.to_owned(),
            reason,
        }
    } else {
        BrowserError::Navigation {
            url: url.to_owned(),
            reason,
        }
    }
}

/// For messages: `5 s`.
pub fn describe_timeout(d: Duration) -> String {
    fmt_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_loadable_scheme() {
        assert!(validate_url("http://127.0.0.1:8080/a").is_ok());
        assert!(validate_url("about:blank").is_ok());
        let e = validate_url("example.com").unwrap_err();
        assert!(e.to_string().contains("no scheme"), "{e}");
        let e = validate_url("javascript:alert(1)").unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        assert!(validate_url("http://[::1").is_err());
        assert!(validate_url("").is_err());
    }

    #[test]
    fn net_errors_are_classified() {
        assert!(matches!(
            classify_net_error("http://x", "net::ERR_CONNECTION_REFUSED".into()),
            BrowserError::Unreachable { .. }
        ));
        assert!(matches!(
            classify_net_error("http://x", "net::ERR_EMPTY_RESPONSE".into()),
            BrowserError::Navigation { .. }
        ));
    }

    #[test]
    fn quads_without_area_have_no_centre() {
        assert_eq!(
            centre(&[0.0, 0.0, 10.0, 0.0, 10.0, 20.0, 0.0, 20.0]),
            Some((5.0, 10.0))
        );
        assert_eq!(centre(&[0.0; 8]), None);
        assert_eq!(centre(&[1.0, 2.0]), None);
    }
}
