//! Telegram's Bot API (<https://core.telegram.org/bots/api>) over long polling.
//!
//! [`Bot`] speaks the documented JSON: every method is `POST {api_base}/bot{token}/{method}`
//! with a JSON body, and every answer is `{"ok": true, "result": ...}` or `{"ok": false,
//! "error_code": N, "description": "...", "parameters": {"retry_after": S}}`. [`Telegram`] is
//! the channel: `getUpdates` from the stored offset, each update recorded once with the next
//! offset, senders outside the allowlist refused once per message and never stored, replies
//! split at 4096 UTF-16 units, "typing" while the answer is made.
//!
//! The token is part of every URL, so no error from here quotes a URL.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{split, ChannelError, Inbound, Inbox, InboxMessage, Transport};

/// Telegram's default API base.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";
/// Longest message text, in UTF-16 code units.
pub const MESSAGE_LIMIT: usize = 4096;
/// What a sender outside the allowlist is told.
pub const REFUSAL: &str = "Sorry, this is a private assistant.";
/// Seconds one `getUpdates` long poll waits for news.
pub const POLL_SECONDS: u64 = 25;

const SERVICE: &str = "Telegram";

/// The Bot API, for one bot token.
#[derive(Clone)]
pub struct Bot {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(Debug, Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    pub username: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Chat {
    pub id: i64,
    #[serde(rename = "type", default)]
    pub kind: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Message {
    pub message_id: i64,
    pub from: Option<User>,
    pub chat: Chat,
    #[serde(default)]
    pub date: i64,
    pub text: Option<String>,
    pub caption: Option<String>,
}

/// One update. Kinds other than `message` are skipped (their ids still move the offset on).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Update {
    pub update_id: i64,
    pub message: Option<Message>,
}

impl Bot {
    /// A bot on `api_base` (Telegram's or a local Bot API server) with `token`.
    pub fn new(api_base: &str, token: &str) -> Result<Bot, ChannelError> {
        let token = token.trim();
        // Telegram tokens are `<bot id>:<secret>`; anything that could change the URL's
        // path is refused before it is used in one.
        if token.is_empty()
            || !token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_' || c == '-')
        {
            return Err(ChannelError::Invalid(
                "the Telegram bot token is malformed: it looks like 123456:ABC-DEF... (from @BotFather)".into(),
            ));
        }
        let base = api_base.trim_end_matches('/');
        let parsed = url::Url::parse(base)
            .map_err(|e| ChannelError::Invalid(format!("bad Telegram API base {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ChannelError::Invalid(format!(
                "bad Telegram API base {base:?}: use http(s)://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ChannelError::Transport(format!("HTTP client: {e}")))?;
        Ok(Bot {
            http,
            base: base.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Calls `method` with `body`; the answer's `result`, or the error Telegram described.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<T, ChannelError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token);
        let resp = self
            .http
            .post(url)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                ChannelError::Transport(format!("{SERVICE} {method}: {}", e.without_url()))
            })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            ChannelError::Transport(format!("{SERVICE} {method}: {}", e.without_url()))
        })?;
        let env: Envelope<T> = serde_json::from_slice(&bytes).map_err(|e| {
            ChannelError::Transport(format!(
                "{SERVICE} {method}: HTTP {status} with an answer that is not the Bot API's JSON ({e})"
            ))
        })?;
        if env.ok {
            return env.result.ok_or_else(|| {
                ChannelError::Transport(format!("{SERVICE} {method}: ok without a result"))
            });
        }
        let code = env.error_code.unwrap_or(i64::from(status));
        let description = env.description.unwrap_or_default();
        Err(match code {
            429 => ChannelError::RetryAfter(Duration::from_secs(
                env.parameters.and_then(|p| p.retry_after).unwrap_or(5).min(3600),
            )),
            409 => ChannelError::Conflict(format!(
                "Telegram refused getUpdates (409: {description}): another program is taking this bot's updates (another zocalo daemon, or a webhook set with setWebhook); stop it or call deleteWebhook"
            )),
            401 | 404 if method == "getMe" || method == "getUpdates" => {
                ChannelError::Unauthorized(format!(
                    "Telegram refused the bot token ({code}: {description}): check `zocalo keys set telegram` or TELEGRAM_BOT_TOKEN"
                ))
            }
            _ => ChannelError::Api {
                service: SERVICE,
                code,
                description,
            },
        })
    }

    pub async fn get_me(&self) -> Result<User, ChannelError> {
        self.call("getMe", &json!({}), Duration::from_secs(15))
            .await
    }

    /// Updates from `offset` on, waiting up to `wait` for the first.
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        wait: Duration,
    ) -> Result<Vec<Update>, ChannelError> {
        let mut body = json!({"timeout": wait.as_secs(), "allowed_updates": ["message"]});
        if let Some(o) = offset {
            body["offset"] = json!(o);
        }
        self.call("getUpdates", &body, wait + Duration::from_secs(15))
            .await
    }

    /// Sends plain `text` (no parse mode: nothing in it is markup).
    pub async fn send_message(
        &self,
        chat_id: i64,
        text: &str,
        reply_to: Option<i64>,
    ) -> Result<Message, ChannelError> {
        let mut body = json!({"chat_id": chat_id, "text": text});
        if let Some(id) = reply_to {
            body["reply_parameters"] =
                json!({"message_id": id, "allow_sending_without_reply": true});
        }
        self.call("sendMessage", &body, Duration::from_secs(30))
            .await
    }

    /// Sends `text` as MarkdownV2 (escape what is not markup with [`escape_markdown_v2`]).
    pub async fn send_markdown(&self, chat_id: i64, text: &str) -> Result<Message, ChannelError> {
        let body = json!({"chat_id": chat_id, "text": text, "parse_mode": "MarkdownV2"});
        self.call("sendMessage", &body, Duration::from_secs(30))
            .await
    }

    pub async fn send_chat_action(&self, chat_id: i64, action: &str) -> Result<bool, ChannelError> {
        self.call(
            "sendChatAction",
            &json!({"chat_id": chat_id, "action": action}),
            Duration::from_secs(15),
        )
        .await
    }
}

/// `text` with every character MarkdownV2 reserves escaped, so it shows as written.
pub fn escape_markdown_v2(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(
            c,
            '_' | '*'
                | '['
                | ']'
                | '('
                | ')'
                | '~'
                | '`'
                | '>'
                | '#'
                | '+'
                | '-'
                | '='
                | '|'
                | '{'
                | '}'
                | '.'
                | '!'
                | '\\'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Telegram channel: a bot and who may talk to it.
#[derive(Clone, Debug)]
pub struct Telegram {
    pub bot: Bot,
    /// Telegram user ids allowed to talk to the computer. Empty: nobody (every sender is
    /// refused, and the refusal says their id, so the owner can add it).
    pub allow: BTreeSet<i64>,
    /// One long poll's wait.
    pub poll: Duration,
}

impl Telegram {
    pub fn new(bot: Bot, allow: impl IntoIterator<Item = i64>) -> Self {
        Telegram {
            bot,
            allow: allow.into_iter().collect(),
            poll: Duration::from_secs(POLL_SECONDS),
        }
    }

    fn chat_of(msg: &InboxMessage) -> Result<(i64, Option<i64>), ChannelError> {
        let chat = msg.reply_to["chat_id"].as_i64().ok_or_else(|| {
            ChannelError::Invalid(format!("inbox message {} has no chat id", msg.id))
        })?;
        Ok((chat, msg.reply_to["message_id"].as_i64()))
    }

    /// Sends `text` to `chat_id` in pieces of at most [`MESSAGE_LIMIT`], the first one as a
    /// reply to `reply_to`.
    pub async fn send_split(
        &self,
        chat_id: i64,
        text: &str,
        reply_to: Option<i64>,
    ) -> Result<(), ChannelError> {
        let pieces = split(text, MESSAGE_LIMIT, char::len_utf16);
        let pieces = if pieces.is_empty() {
            vec!["(no answer)".to_owned()]
        } else {
            pieces
        };
        for (i, piece) in pieces.iter().enumerate() {
            loop {
                match self
                    .bot
                    .send_message(chat_id, piece, if i == 0 { reply_to } else { None })
                    .await
                {
                    Err(ChannelError::RetryAfter(d)) => tokio::time::sleep(d).await,
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Transport for Telegram {
    fn channel(&self) -> &str {
        "telegram"
    }

    async fn receive(&self, inbox: &Inbox) -> Result<usize, ChannelError> {
        let cursor = inbox.cursor("telegram").await?;
        let offset = cursor
            .resume_from
            .as_deref()
            .and_then(|s| s.parse::<i64>().ok());
        let updates = self.bot.get_updates(offset, self.poll).await?;
        let Some(last) = updates.iter().map(|u| u.update_id).max() else {
            return Ok(0);
        };
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for u in &updates {
            let Some(m) = &u.message else { continue };
            let Some(text) = m.text.as_ref().or(m.caption.as_ref()) else {
                continue;
            };
            let Some(from) = &m.from else { continue };
            if from.is_bot {
                continue;
            }
            if !self.allow.contains(&from.id) {
                refused.push((m.chat.id, from.id));
                continue;
            }
            accepted.push(Inbound {
                external_id: u.update_id.to_string(),
                sender: from.id.to_string(),
                conv_key: format!("telegram:{}", m.chat.id),
                text: text.clone(),
                reply_to: json!({"chat_id": m.chat.id, "message_id": m.message_id}),
            });
        }
        let new = inbox
            .receive("telegram", &accepted, Some(&(last + 1).to_string()))
            .await?;
        for (chat, user) in refused {
            tracing::info!(
                chat,
                user,
                "telegram: refused a sender outside the allowlist"
            );
            if let Err(e) = self.bot.send_message(chat, REFUSAL, None).await {
                tracing::warn!("telegram: could not send a refusal: {e}");
            }
        }
        Ok(new)
    }

    async fn typing(&self, msg: &InboxMessage) -> Result<(), ChannelError> {
        let (chat, _) = Self::chat_of(msg)?;
        self.bot.send_chat_action(chat, "typing").await.map(drop)
    }

    async fn reply(&self, msg: &InboxMessage, text: &str) -> Result<(), ChannelError> {
        let (chat, message_id) = Self::chat_of(msg)?;
        self.send_split(chat, text, message_id).await
    }

    async fn notify(&self, to: &str, text: &str) -> Result<(), ChannelError> {
        let chat: i64 = to
            .parse()
            .map_err(|_| ChannelError::Invalid(format!("bad Telegram chat id {to:?}")))?;
        self.send_split(chat, text, None).await
    }

    async fn check(&self) -> Result<String, ChannelError> {
        let me = self.bot.get_me().await?;
        Ok(format!(
            "bot @{} (id {}), {} allowed user(s)",
            me.username.unwrap_or(me.first_name),
            me.id,
            self.allow.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_v2_escapes_every_reserved_character() {
        assert_eq!(
            escape_markdown_v2("a_b*c[d](e)~`>#+-=|{}.!\\ ok"),
            "a\\_b\\*c\\[d\\]\\(e\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\ ok"
        );
        assert_eq!(escape_markdown_v2("plain words 🦀"), "plain words 🦀");
    }

    #[test]
    fn malformed_tokens_and_bases_are_refused_before_any_request() {
        for bad in ["", "  ", "12/34", "123:abc?x=1", "123:abc#", "a b"] {
            assert!(
                matches!(
                    Bot::new(DEFAULT_API_BASE, bad),
                    Err(ChannelError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(Bot::new("ftp://x", "1:a").is_err());
        assert!(Bot::new("not a url", "1:a").is_err());
        assert!(Bot::new("http://127.0.0.1:9/", "123:ABC-def_1").is_ok());
    }

    #[test]
    fn updates_decode_from_the_documented_json() {
        let v = json!({"ok": true, "result": [
            {"update_id": 10, "message": {"message_id": 1, "date": 1700000000,
              "from": {"id": 7, "is_bot": false, "first_name": "Ana", "username": "ana"},
              "chat": {"id": 7, "type": "private", "first_name": "Ana"}, "text": "hi"}},
            {"update_id": 11, "edited_message": {"message_id": 1}},
            {"update_id": 12, "message": {"message_id": 2, "chat": {"id": -5, "type": "group"},
              "photo": [], "caption": "look"}}
        ]});
        let env: Envelope<Vec<Update>> =
            serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        let updates = env.result.unwrap_or_default();
        assert_eq!(updates.len(), 3);
        assert_eq!(
            updates[0].message.as_ref().and_then(|m| m.text.as_deref()),
            Some("hi")
        );
        assert!(updates[1].message.is_none());
        assert_eq!(
            updates[2]
                .message
                .as_ref()
                .and_then(|m| m.caption.as_deref()),
            Some("look")
        );
    }
}
