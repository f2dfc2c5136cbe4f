//! A local Telegram Bot API server: the documented JSON (<https://core.telegram.org/bots/api>)
//! for the methods zocalo uses, with the real server's rules that matter to a client.
//!
//! - `POST /bot<TOKEN>/<method>` with a JSON body; a wrong token is 401 `Unauthorized`, an
//!   unknown method 404 `Not Found`; answers are `{"ok": true, "result": ...}` or
//!   `{"ok": false, "error_code", "description", "parameters"?}`.
//! - `getUpdates {offset?, timeout?}`: the updates with `update_id >= offset`; giving an offset
//!   confirms (forgets) every earlier update, as Telegram does. With nothing to return it
//!   waits up to `timeout` seconds for an update to be pushed.
//! - `sendMessage {chat_id, text, parse_mode?, reply_parameters?}`: 400 for an empty text or
//!   one over 4096 UTF-16 code units ("message is too long"), else recorded.
//! - `sendChatAction`, `getMe`.
//! - Scripted failures: [`FakeTelegram::fail_next`] makes the next call of a method answer
//!   an error (429 with `retry_after`, 409 `Conflict`, ...), in order.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The bot's token in tests.
pub const TOKEN: &str = "123456:TEST-token_for-zocalo";
/// The bot's own user id.
pub const BOT_ID: i64 = 123456;

#[derive(Default)]
struct State_ {
    /// Not yet confirmed updates, in id order.
    updates: VecDeque<Value>,
    next_update_id: i64,
    next_message_id: i64,
    sent: Vec<Value>,
    actions: Vec<Value>,
    /// Every call: (method, body).
    calls: Vec<(String, Value)>,
    failures: HashMap<String, VecDeque<(u16, Value)>>,
}

struct Shared {
    state: Mutex<State_>,
    pushed: tokio::sync::Notify,
    token: String,
}

fn lock(s: &Shared) -> MutexGuard<'_, State_> {
    s.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server. Stops when dropped.
pub struct FakeTelegram {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTelegram {
    /// Serves on a free loopback port, for the bot [`TOKEN`].
    pub async fn start() -> FakeTelegram {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("FakeTelegram: cannot bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("FakeTelegram: no address: {e}"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State_ {
                next_update_id: 1000,
                next_message_id: 1,
                ..State_::default()
            }),
            pushed: tokio::sync::Notify::new(),
            token: TOKEN.to_owned(),
        });
        let app = Router::new()
            .route("/{bot}/{method}", post(call))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTelegram { addr, shared, task }
    }

    /// The API base to configure (`TELEGRAM_API_BASE`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A private-chat text message from user `from` (chat id = user id); returns its
    /// update_id.
    pub fn push_text(&self, from: i64, text: &str) -> i64 {
        self.push_message(json!({
            "from": {"id": from, "is_bot": false, "first_name": format!("User{from}")},
            "chat": {"id": from, "type": "private"},
            "text": text,
        }))
    }

    /// An update whose `message` is `message` plus `message_id` and `date`.
    pub fn push_message(&self, mut message: Value) -> i64 {
        let id = {
            let mut s = lock(&self.shared);
            let id = s.next_update_id;
            s.next_update_id += 1;
            message["message_id"] = json!(s.next_message_id);
            s.next_message_id += 1;
            message["date"] = json!(1_765_000_000);
            s.updates
                .push_back(json!({"update_id": id, "message": message}));
            id
        };
        self.shared.pushed.notify_waiters();
        id
    }

    /// The next call of `method` answers HTTP `status` with the body `{"ok": false,
    /// "error_code": status, "description": description, ...extra}`.
    pub fn fail_next(
        &self,
        method: &str,
        status: u16,
        description: &str,
        parameters: Option<Value>,
    ) {
        let mut body = json!({"ok": false, "error_code": status, "description": description});
        if let Some(p) = parameters {
            body["parameters"] = p;
        }
        lock(&self.shared)
            .failures
            .entry(method.to_owned())
            .or_default()
            .push_back((status, body));
    }

    /// Every `sendMessage` body accepted, in order.
    pub fn sent(&self) -> Vec<Value> {
        lock(&self.shared).sent.clone()
    }

    /// The texts sent to `chat`, in order.
    pub fn sent_to(&self, chat: i64) -> Vec<String> {
        self.sent()
            .iter()
            .filter(|m| m["chat_id"].as_i64() == Some(chat))
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn actions(&self) -> Vec<Value> {
        lock(&self.shared).actions.clone()
    }

    /// Every call (method, body), in order, failed ones included.
    pub fn calls(&self) -> Vec<(String, Value)> {
        lock(&self.shared).calls.clone()
    }

    /// Updates not yet confirmed by a later offset.
    pub fn unconfirmed(&self) -> usize {
        lock(&self.shared).updates.len()
    }

    /// Waits until `f(self)` holds, up to `timeout`; panics with `what` otherwise.
    pub async fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&FakeTelegram) -> bool) {
        let start = Instant::now();
        while !f(self) {
            if start.elapsed() > timeout {
                panic!(
                    "FakeTelegram: timed out after {timeout:?} waiting for {what}; calls: {:#?}",
                    self.calls()
                        .iter()
                        .map(|(m, b)| format!("{m} {b}"))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn error(status: u16, description: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(json!({"ok": false, "error_code": status, "description": description})),
    )
        .into_response()
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

async fn call(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if bot != format!("bot{}", shared.token) {
        return error(401, "Unauthorized");
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) if body.is_empty() => json!({}),
        Err(_) => return error(400, "Bad Request: can't parse JSON"),
    };
    {
        let mut s = lock(&shared);
        s.calls.push((method.clone(), body.clone()));
        if let Some((status, b)) = s.failures.get_mut(&method).and_then(VecDeque::pop_front) {
            return (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                Json(b),
            )
                .into_response();
        }
    }
    match method.as_str() {
        "getMe" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Zocalo Test", "username": "zocalo_test_bot"
        })),
        "getUpdates" => get_updates(&shared, &body).await,
        "sendMessage" => {
            let Some(chat) = body["chat_id"].as_i64() else {
                return error(400, "Bad Request: chat_id is empty");
            };
            let text = body["text"].as_str().unwrap_or_default();
            if text.trim().is_empty() {
                return error(400, "Bad Request: message text is empty");
            }
            if text.encode_utf16().count() > 4096 {
                return error(400, "Bad Request: message is too long");
            }
            let mut s = lock(&shared);
            s.sent.push(body.clone());
            let id = s.next_message_id;
            s.next_message_id += 1;
            ok(json!({
                "message_id": id, "date": 1_765_000_000,
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "Zocalo Test"},
                "chat": {"id": chat, "type": "private"}, "text": text
            }))
        }
        "sendChatAction" => {
            lock(&shared).actions.push(body);
            ok(json!(true))
        }
        _ => error(404, "Not Found"),
    }
}

async fn get_updates(shared: &Shared, body: &Value) -> Response {
    let offset = body["offset"].as_i64();
    let wait = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(50));
    let deadline = Instant::now() + wait;
    loop {
        let pushed = shared.pushed.notified();
        {
            let mut s = lock(shared);
            if let Some(o) = offset {
                // An offset confirms every update before it.
                while s
                    .updates
                    .front()
                    .is_some_and(|u| u["update_id"].as_i64().unwrap_or(0) < o)
                {
                    s.updates.pop_front();
                }
            }
            let out: Vec<Value> = s.updates.iter().take(100).cloned().collect();
            if !out.is_empty() || Instant::now() >= deadline {
                return ok(Value::Array(out));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, pushed).await;
    }
}
