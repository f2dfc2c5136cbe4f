//! Channels on the runtime: Telegram, email and webhooks in, answered by the ask loop; `notify`
//! out; the automations' deliveries (`schedule add --deliver`).
//!
//! One loop per channel ([`run_channel`], started by the daemon): answer what is open in the
//! inbox (after a crash: what was being answered), then wait for new messages. A message is
//! a slash command ([`Command`]) or an ask in the conversation of its key
//! (`telegram:<chat id>`, `email:<address>`, `hook:<name>`) as the conversation's persona,
//! else the channel's. Nobody is there to approve a tool: asks from channels are unattended,
//! so tools whose decision is `ask` are refused unless `[permissions]` or the persona allow
//! them.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use zocalo_channels::command::HELP;
use zocalo_channels::telegram::{Bot, Telegram, DEFAULT_API_BASE};
use zocalo_channels::webhook::{self, HookRefusal};
use zocalo_channels::{ChannelError, Command, Inbound, Inbox, InboxMessage, InboxState, Target};
use zocalo_core::Secret;

use crate::errors::usage;
use crate::{is_usage, Ask, Runtime};

/// Tries at answering one message before it is given up (each try after a provider failure).
pub const MAX_ATTEMPTS: i64 = 3;
/// What a message that could not be answered gets.
const GAVE_UP: &str =
    "Sorry, I could not answer this message (the model failed three times). Try again later.";
/// The inbox channel of webhooks is `hook:NAME`; this prefix takes them all.
const HOOK_PREFIX: &str = "hook:";

/// Where a channel's secret comes from: its environment variable, then the vault entry.
pub const TELEGRAM_TOKEN_ENV: &str = "TELEGRAM_BOT_TOKEN";
pub const TELEGRAM_API_BASE_ENV: &str = "TELEGRAM_API_BASE";
pub const EMAIL_PASSWORD_ENV: &str = "ZOCALO_EMAIL_PASSWORD";

/// Secrets the vault keeps besides providers' API keys: (vault name, environment variable).
pub const CHANNEL_SECRETS: &[(&str, &str)] = &[
    ("telegram", TELEGRAM_TOKEN_ENV),
    ("email", EMAIL_PASSWORD_ENV),
];

impl Runtime {
    /// A channel secret: the environment variable, else the vault's entry `name`.
    pub fn channel_secret(&self, name: &str, env: &str) -> anyhow::Result<Option<Secret>> {
        if let Ok(v) = std::env::var(env) {
            if !v.trim().is_empty() {
                return Ok(Some(Secret::new(v.trim())));
            }
        }
        Ok((self.vault_lookup())(name)?)
    }

    /// The Telegram channel as configured: None when `[channels.telegram]` is absent or
    /// disabled; an error when it is configured but cannot run (no token, a bad API base).
    pub fn telegram(&self) -> anyhow::Result<Option<Telegram>> {
        let Some(cfg) = &self.config.channels.telegram else {
            return Ok(None);
        };
        if cfg.enabled == Some(false) {
            return Ok(None);
        }
        let token = self
            .channel_secret("telegram", TELEGRAM_TOKEN_ENV)?
            .ok_or_else(|| {
                usage(format!(
                    "[channels.telegram] is configured but there is no bot token: set {TELEGRAM_TOKEN_ENV} or run `zocalo keys set telegram` (the token @BotFather gave you)"
                ))
            })?;
        let base = std::env::var(TELEGRAM_API_BASE_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| cfg.api_base.clone())
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        let bot = Bot::new(&base, token.expose())?;
        Ok(Some(Telegram::new(bot, cfg.allow.iter().copied())))
    }

    /// The email channel as configured: None when `[channels.email]` is absent or disabled;
    /// an error when it is configured but cannot run (no password, a malformed URL or
    /// address).
    pub fn email(&self) -> anyhow::Result<Option<zocalo_channels::email::Email>> {
        let Some(cfg) = &self.config.channels.email else {
            return Ok(None);
        };
        if cfg.enabled == Some(false) {
            return Ok(None);
        }
        let password = self
            .channel_secret("email", EMAIL_PASSWORD_ENV)?
            .ok_or_else(|| {
                usage(format!(
                    "[channels.email] is configured but there is no password: set {EMAIL_PASSWORD_ENV} or run `zocalo keys set email` (an app password for {})",
                    cfg.user
                ))
            })?;
        Ok(Some(zocalo_channels::email::Email::new(cfg, password)?))
    }

    /// Every configured, enabled channel that can run, and the channels that are configured
    /// but cannot (with why).
    pub fn transports(&self) -> (Vec<Configured>, Vec<(String, String)>) {
        let mut ok = Vec::new();
        let mut broken = Vec::new();
        match self.telegram() {
            Ok(Some(t)) => ok.push(Configured {
                transport: Arc::new(t),
                persona: self
                    .config
                    .channels
                    .telegram
                    .as_ref()
                    .and_then(|c| c.persona.clone()),
            }),
            Ok(None) => {}
            Err(e) => broken.push(("telegram".to_owned(), format!("{e:#}"))),
        }
        match self.email() {
            Ok(Some(t)) => ok.push(Configured {
                transport: Arc::new(t),
                persona: self
                    .config
                    .channels
                    .email
                    .as_ref()
                    .and_then(|c| c.persona.clone()),
            }),
            Ok(None) => {}
            Err(e) => broken.push(("email".to_owned(), format!("{e:#}"))),
        }
        (ok, broken)
    }

    /// The transport of `channel` (`telegram`, `email`), configured and able to run.
    fn transport(&self, channel: &str) -> anyhow::Result<Arc<dyn zocalo_channels::Transport>> {
        let (ok, broken) = self.transports();
        if let Some(c) = ok.into_iter().find(|c| c.transport.channel() == channel) {
            return Ok(c.transport);
        }
        if let Some((_, why)) = broken.into_iter().find(|(n, _)| n == channel) {
            return Err(usage(why));
        }
        Err(usage(format!(
            "the {channel} channel is not configured: add [channels.{channel}] to config.toml (see docs/channels.md)"
        )))
    }

    /// Sends `text` to `target` (`telegram:CHAT_ID`, `email:ADDR`, `webhook:NAME`) now.
    pub async fn notify(&self, target: &str, text: &str) -> anyhow::Result<()> {
        let target: Target = target.parse()?;
        if text.trim().is_empty() {
            return Err(usage("the message is empty"));
        }
        match &target {
            Target::Webhook { name } => {
                let hook = self.config.hooks.get(name).ok_or_else(|| {
                    usage(format!(
                        "no [hooks.{name}] in config.toml: a webhook target needs its url"
                    ))
                })?;
                let url = hook
                    .url
                    .as_deref()
                    .ok_or_else(|| usage(format!("[hooks.{name}] has no url to deliver to")))?;
                let secret = hook_secret(name, hook);
                let payload = json!({"hook": name, "text": text, "sent_at": chrono::Utc::now()});
                webhook::deliver(
                    &http_client(),
                    url,
                    secret.as_ref().map(|s| s.expose().as_bytes()),
                    &payload,
                )
                .await?;
            }
            other => {
                self.transport(other.channel())?
                    .notify(&other.address(), text)
                    .await?;
            }
        }
        Ok(())
    }

    /// Checks a channel's credentials and that its service answers (`zocalo channels test`).
    pub async fn channel_test(&self, name: &str) -> anyhow::Result<String> {
        if let Some(hook) = name.strip_prefix(HOOK_PREFIX) {
            let cfg = self
                .config
                .hooks
                .get(hook)
                .ok_or_else(|| usage(format!("no [hooks.{hook}] in config.toml")))?;
            return match hook_secret(hook, cfg) {
                Some(_) => Ok(format!(
                    "hook {hook}: secret set ({}), accepts POST /hooks/{hook}{}",
                    secret_env(hook, cfg),
                    cfg.url
                        .as_deref()
                        .map(|u| format!(", delivers to {u}"))
                        .unwrap_or_default()
                )),
                None => Err(usage(format!(
                    "hook {hook}: its secret {} is not set, so every request would be refused",
                    secret_env(hook, cfg)
                ))),
            };
        }
        Ok(self.transport(name)?.check().await?)
    }

    /// Checks a hook request and records it (`POST /hooks/NAME`); the daemon's hook loop
    /// answers it. Returns the inbox id.
    pub async fn hook_received(
        &self,
        name: &str,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<String, HookError> {
        let cfg = self
            .config
            .hooks
            .get(name)
            .ok_or_else(|| HookError::Unknown(name.to_owned()))?;
        let secret = hook_secret(name, cfg).ok_or_else(|| {
            HookError::NoSecret(format!(
                "hook {name} has no secret ({} is not set): every request is refused",
                secret_env(name, cfg)
            ))
        })?;
        let verified = webhook::verify(
            secret.expose().as_bytes(),
            header,
            body,
            chrono::Utc::now().timestamp(),
        )
        .map_err(HookError::Refused)?;
        let text = String::from_utf8_lossy(body);
        let message = match &cfg.prompt {
            Some(p) => p.replace("{body}", &text),
            None => format!("The webhook `{name}` was called with this body:\n\n{text}"),
        };
        let channel = format!("{HOOK_PREFIX}{name}");
        let store = self
            .store()
            .await
            .map_err(|e| HookError::Failed(format!("{e:#}")))?;
        let inbox = Inbox::new(store);
        let inbound = Inbound {
            external_id: verified.delivery_id.clone(),
            sender: name.to_owned(),
            conv_key: channel.clone(),
            text: message,
            reply_to: json!({"deliver": cfg.deliver}),
        };
        let new = inbox
            .receive(&channel, &[inbound], None)
            .await
            .map_err(|e| HookError::Failed(e.to_string()))?;
        if new == 0 {
            return Err(HookError::Replayed);
        }
        let id = inbox
            .find(&channel, &verified.delivery_id)
            .await
            .map_err(|e| HookError::Failed(e.to_string()))?
            .unwrap_or_default();
        self.hooks_signal().notify_one();
        Ok(id)
    }

    /// `channels list|status`: every configured channel and hook, whether it can run, its
    /// inbox counts and its poller's last error.
    pub async fn channels_status(&self) -> anyhow::Result<Vec<ChannelStatus>> {
        let store = self.store().await?;
        let inbox = Inbox::new(store);
        let (ok, broken) = self.transports();
        let mut out = Vec::new();
        let mut names: Vec<(String, Option<String>)> = ok
            .iter()
            .map(|c| (c.transport.channel().to_owned(), None))
            .collect();
        names.extend(broken.into_iter().map(|(n, why)| (n, Some(why))));
        for (name, cfg) in &self.config.hooks {
            let problem = hook_secret(name, cfg)
                .is_none()
                .then(|| format!("its secret {} is not set", secret_env(name, cfg)));
            names.push((format!("{HOOK_PREFIX}{name}"), problem));
        }
        for (name, problem) in names {
            let cursor = inbox.cursor(&name).await?;
            let counts = inbox.counts(&name).await?;
            let last = inbox.recent(&name, 1).await?.into_iter().next();
            out.push(ChannelStatus {
                position: cursor.resume_from,
                ready: problem.is_none(),
                problem,
                last_error: cursor.last_error,
                last_error_at: cursor.error_at.map(ms_to_time),
                messages: counts.into_iter().collect(),
                last_message_at: last.map(|m| ms_to_time(m.created_at)),
                name,
            });
        }
        Ok(out)
    }
}

fn ms_to_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// The environment variable holding a hook's secret.
pub fn secret_env(name: &str, cfg: &zocalo_core::config::HookConfig) -> String {
    cfg.secret_env.clone().unwrap_or_else(|| {
        format!(
            "ZOCALO_HOOK_{}",
            name.to_ascii_uppercase().replace('-', "_")
        )
    })
}

fn hook_secret(name: &str, cfg: &zocalo_core::config::HookConfig) -> Option<Secret> {
    std::env::var(secret_env(name, cfg))
        .ok()
        .filter(|s| !s.is_empty())
        .map(Secret::new)
}

/// A configured channel and the persona its conversations are asked as by default.
#[derive(Clone)]
pub struct Configured {
    pub transport: Arc<dyn zocalo_channels::Transport>,
    pub persona: Option<String>,
}

/// One line of `zocalo channels status`.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelStatus {
    pub name: String,
    /// Configured and able to run (a token or secret is there).
    pub ready: bool,
    /// Why not, when not ready.
    pub problem: Option<String>,
    /// Where the poller resumes (Telegram's next update id, the mailbox's
    /// `UIDVALIDITY:UID`); null before its first look.
    pub position: Option<String>,
    /// The poller's last error (a 409, a refused token, the service unreachable).
    pub last_error: Option<String>,
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Inbound messages by state (received, answered, sent, failed).
    pub messages: std::collections::BTreeMap<String, i64>,
    pub last_message_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a webhook request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("no hook named {0:?}")]
    Unknown(String),
    #[error("{0}")]
    NoSecret(String),
    #[error("{0}")]
    Refused(HookRefusal),
    #[error("this delivery was already received (a replay)")]
    Replayed,
    #[error("{0}")]
    Failed(String),
}

/// Webhooks as a channel: new requests come from the server ([`Runtime::hook_received`]),
/// which wakes this process's loop; answers go to the hook's `deliver` target, or stay in
/// its conversation.
struct Hooks {
    rt: Runtime,
}

#[async_trait::async_trait]
impl zocalo_channels::Transport for Hooks {
    fn channel(&self) -> &str {
        HOOK_PREFIX
    }

    async fn receive(&self, _inbox: &Inbox) -> Result<usize, ChannelError> {
        // Another process's server records hooks too: look again after a while anyway.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.rt.hooks_signal().notified()).await;
        Ok(0)
    }

    async fn reply(&self, msg: &InboxMessage, text: &str) -> Result<(), ChannelError> {
        match msg.reply_to["deliver"].as_str() {
            Some(target) => self
                .rt
                .notify(target, text)
                .await
                .map_err(|e| ChannelError::Transport(format!("{e:#}"))),
            None => Ok(()),
        }
    }

    async fn notify(&self, _to: &str, _text: &str) -> Result<(), ChannelError> {
        Err(ChannelError::Invalid(
            "send to a hook's url with a webhook:NAME target".into(),
        ))
    }

    async fn check(&self) -> Result<String, ChannelError> {
        Ok("webhooks".into())
    }
}

/// Every channel loop of this process: the configured channels, and the webhooks' answers.
/// Channels that are configured but cannot run are reported (log and `channels status`) and
/// skipped.
pub async fn spawn_channels(
    rt: &Runtime,
    stop: CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let inbox = Inbox::new(rt.store().await?);
    let (ok, broken) = rt.transports();
    for (name, why) in broken {
        tracing::error!(channel = %name, "channel not started: {why}");
        let _ = inbox.poll_failed(&name, &why).await;
    }
    let mut tasks = Vec::new();
    for c in ok {
        tracing::info!(channel = c.transport.channel(), "channel started");
        tasks.push(tokio::spawn(run_channel(
            rt.clone(),
            c.transport,
            c.persona,
            stop.clone(),
        )));
    }
    if !rt.config.hooks.is_empty() {
        let hooks: Arc<dyn zocalo_channels::Transport> = Arc::new(Hooks { rt: rt.clone() });
        tasks.push(tokio::spawn(run_channel(rt.clone(), hooks, None, stop)));
    }
    Ok(tasks)
}

/// One channel's loop until `stop`: answer what is open, wait for new messages, again.
/// Errors are logged and recorded as the channel's last error, then waited out (the time a
/// 429 asks for; a growing pause otherwise).
pub async fn run_channel(
    rt: Runtime,
    transport: Arc<dyn zocalo_channels::Transport>,
    persona: Option<String>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let inbox = Inbox::new(rt.store().await?);
    let channel = transport.channel().to_owned();
    let mut pause = Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = answer_open(&rt, &transport, &inbox, persona.as_deref()) => {}
            _ = stop.cancelled() => return Ok(()),
        }
        let received = tokio::select! {
            r = transport.receive(&inbox) => r,
            _ = stop.cancelled() => return Ok(()),
        };
        let wait = match received {
            Ok(_) => {
                pause = Duration::from_secs(1);
                continue;
            }
            Err(ChannelError::RetryAfter(d)) => {
                tracing::warn!(channel = %channel, "rate limited: waiting {d:?} as asked");
                d
            }
            Err(e) => {
                tracing::error!(channel = %channel, "{e}");
                let _ = inbox.poll_failed(&channel, &e.to_string()).await;
                let wait = match e {
                    // Another poller may stop soon (a daemon being replaced).
                    ChannelError::Conflict(_) => Duration::from_secs(5),
                    // A revoked token stays revoked until the owner acts.
                    ChannelError::Unauthorized(_) => Duration::from_secs(60),
                    _ => pause,
                };
                pause = (pause * 2).min(Duration::from_secs(60));
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

/// Answers and sends every open message of the channel, oldest first.
async fn answer_open(
    rt: &Runtime,
    transport: &Arc<dyn zocalo_channels::Transport>,
    inbox: &Inbox,
    persona: Option<&str>,
) {
    let open = match inbox.open(transport.channel(), 100).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(channel = transport.channel(), "reading the inbox: {e}");
            return;
        }
    };
    for msg in open {
        if let Err(e) = answer_one(rt, transport, inbox, &msg, persona).await {
            tracing::warn!(channel = transport.channel(), message = %msg.id, "{e:#}");
            // Stop at the first failure: later messages wait, so they are answered in order.
            return;
        }
    }
}

/// Answers one message (unless its answer is already made) and sends the reply.
pub async fn answer_one(
    rt: &Runtime,
    transport: &Arc<dyn zocalo_channels::Transport>,
    inbox: &Inbox,
    msg: &InboxMessage,
    persona: Option<&str>,
) -> anyhow::Result<()> {
    let answer = match msg.state {
        InboxState::Answered => msg.answer.clone().unwrap_or_default(),
        InboxState::Received => {
            let attempts = inbox.attempt(&msg.id).await?;
            if attempts > MAX_ATTEMPTS {
                inbox
                    .failed(&msg.id, "the model failed three times")
                    .await?;
                let _ = transport.reply(msg, GAVE_UP).await;
                return Ok(());
            }
            let text = match Command::parse(&msg.text) {
                Some(cmd) if !msg.channel.starts_with(HOOK_PREFIX) => {
                    command(rt, msg, cmd, persona).await?
                }
                _ => ask(rt, transport, msg, persona).await?,
            };
            inbox.answered(&msg.id, &text).await?;
            text
        }
        InboxState::Sent | InboxState::Failed => return Ok(()),
    };
    match transport.reply(msg, &answer).await {
        Ok(()) => inbox.sent(&msg.id).await?,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => inbox.failed(&msg.id, &format!("reply: {e}")).await?,
    }
    Ok(())
}

/// The ask for an ordinary message, with "typing" shown every 4 s while it is made. A
/// mistake in the message or the config is answered (the person sees why); a failing
/// provider is an error (the message is tried again later).
async fn ask(
    rt: &Runtime,
    transport: &Arc<dyn zocalo_channels::Transport>,
    msg: &InboxMessage,
    persona: Option<&str>,
) -> anyhow::Result<String> {
    let typing = {
        let t = transport.clone();
        let m = msg.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = t.typing(&m).await {
                    tracing::debug!("typing: {e}");
                }
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
        })
    };
    let request = Ask {
        message: msg.text.clone(),
        conv_key: Some(msg.conv_key.clone()),
        fallback_persona: persona.map(str::to_owned),
        ..Ask::default()
    };
    let result = rt.ask(request, &mut |_| {}).await;
    typing.abort();
    match result {
        Ok(o) => Ok(o.text),
        Err(e) if is_usage(&e) => Ok(format!("I could not answer: {e:#}")),
        Err(e) => Err(e),
    }
}

/// The answer to a slash command.
async fn command(
    rt: &Runtime,
    msg: &InboxMessage,
    cmd: Command,
    channel_persona: Option<&str>,
) -> anyhow::Result<String> {
    let store = rt.store().await?;
    let key = msg.conv_key.as_str();
    Ok(match cmd {
        Command::Help => HELP.to_owned(),
        Command::Unknown(c) => format!("Unknown command /{c}.\n{HELP}"),
        Command::New => {
            store.release_conversation_key(key).await?;
            "Started a new conversation.".to_owned()
        }
        Command::Status => {
            let conv = store.conversation_of_key(key).await?;
            let (settings, count) = match &conv {
                Some(id) => (
                    store.conversation_settings(id).await?,
                    store
                        .get_conversation(id)
                        .await?
                        .map_or(0, |c| c.message_count),
                ),
                None => Default::default(),
            };
            let (provider, model) = match &settings.model {
                Some(m) => (None, Some(m.clone())),
                None => rt
                    .default_provider()
                    .map_or((None, None), |(p, m)| (Some(p), Some(m))),
            };
            format!(
                "Conversation: {}\nMessages: {count}\nModel: {}\nPersona: {}",
                conv.as_ref().map_or("(new)".to_owned(), |c| c.to_string()),
                match (provider, model) {
                    (Some(p), Some(m)) => format!("{p}:{m}"),
                    (_, Some(m)) => m,
                    _ => "(default)".to_owned(),
                },
                settings
                    .persona
                    .as_deref()
                    .or(channel_persona)
                    .unwrap_or("(none)")
            )
        }
        Command::Model(None) => {
            let conv = store.conversation_of_key(key).await?;
            let kept = match &conv {
                Some(id) => store.conversation_settings(id).await?.model,
                None => None,
            };
            format!(
                "Model: {}. Choose one with /model NAME (provider:model), or /model default.",
                kept.unwrap_or_else(|| "the configured default".to_owned())
            )
        }
        Command::Model(Some(name)) => {
            let (id, _) = store.conversation_for_key(key).await?;
            if name.eq_ignore_ascii_case("default") {
                store.set_conversation_model(&id, None).await?;
                "Back to the default model.".to_owned()
            } else {
                match rt.model_spec(&name).and_then(|c| rt.provider(&c).map(drop)) {
                    Ok(()) => {
                        store.set_conversation_model(&id, Some(&name)).await?;
                        format!("This conversation now uses {name}.")
                    }
                    Err(e) => format!("I cannot use {name}: {e:#}"),
                }
            }
        }
        Command::Persona(None) => {
            let known: Vec<&str> = rt.config.personas.keys().map(String::as_str).collect();
            format!(
                "Personas: {}. Choose one with /persona NAME, or /persona none.",
                if known.is_empty() {
                    "none configured".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
        Command::Persona(Some(name)) => {
            let (id, _) = store.conversation_for_key(key).await?;
            if name.eq_ignore_ascii_case("none") {
                store.set_conversation_persona(&id, None).await?;
                match channel_persona {
                    Some(p) => format!("Back to this channel's persona, {p}."),
                    None => "No persona now.".to_owned(),
                }
            } else {
                match rt.check_persona(&name) {
                    Ok(()) => {
                        store.set_conversation_persona(&id, Some(&name)).await?;
                        format!("This conversation now answers as {name}.")
                    }
                    Err(e) => format!("{e:#}"),
                }
            }
        }
    })
}

/// The `deliver` job kind: payload {"target", "text", "source"?} → sends it; a failure is
/// retried with the pool's backoff, a bad target fails for good.
pub struct DeliverHandler {
    pub ctx: Runtime,
}

/// Checks a `deliver` payload.
pub fn validate_deliver(p: &Value) -> Result<(), String> {
    const SHAPE: &str = r#"expected {"target": "telegram:ID|email:ADDR|webhook:NAME", "text": "...", "source"?: "..."}"#;
    let obj = p.as_object().ok_or(SHAPE)?;
    if obj
        .keys()
        .any(|k| !matches!(k.as_str(), "target" | "text" | "source"))
    {
        return Err(format!("unknown field; {SHAPE}"));
    }
    let target = obj.get("target").and_then(Value::as_str).ok_or(SHAPE)?;
    target.parse::<Target>().map_err(|e| e.to_string())?;
    obj.get("text").and_then(Value::as_str).ok_or(SHAPE)?;
    Ok(())
}

#[async_trait::async_trait]
impl zocalo_pool::Handler for DeliverHandler {
    fn validate(&self, payload: &Value) -> Result<(), zocalo_pool::PayloadError> {
        Ok(validate_deliver(payload)?)
    }

    async fn run(&self, job: zocalo_pool::JobRun) -> Result<Value, zocalo_pool::JobError> {
        use zocalo_pool::JobError;
        validate_deliver(&job.payload).map_err(JobError::fatal)?;
        let target = job.payload["target"].as_str().unwrap_or_default();
        let text = job.payload["text"].as_str().unwrap_or_default();
        match self.ctx.notify(target, text).await {
            Ok(()) => Ok(json!({"delivered": target})),
            Err(e) if is_usage(&e) => Err(JobError::fatal(format!("{e:#}"))),
            Err(e) => Err(JobError::retry(format!("{e:#}"))),
        }
    }
}
