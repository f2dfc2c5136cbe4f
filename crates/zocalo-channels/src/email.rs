//! Email: IMAP in, SMTP out.
//!
//! [`Email`] reads one mailbox over IMAP (`imaps://`, or plain `imap://` on loopback for tests)
//! and answers over SMTP with lettre (`smtps://`, `smtp://` with STARTTLS, or `smtp+plain://` on
//! loopback). The resume position is `"<UIDVALIDITY>:<last UID>"`: every receive takes the
//! UIDs above it, records the allowed senders' mail and the new position in one transaction,
//! and, when nothing is new, waits with IDLE (bounded, so shutdown and errors are seen) or
//! sleeps `poll_seconds` where the server has no IDLE.
//!
//! Mail from senders outside `allow` is skipped and not stored, and gets no answer: an
//! automatic reply to a forged sender is backscatter. Automatic mail (auto-replies, bounces,
//! lists) is skipped too, so two robots never answer each other for ever. The allowlist
//! checks the From header, which anyone can write: it keeps strangers and spam out, it does
//! not authenticate (that is the mail provider's SPF/DKIM/DMARC filtering).
//!
//! The first receive on a mailbox (no position yet), and one after the mailbox's UIDVALIDITY
//! changed, starts from the mailbox's current end: old mail is never answered.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_trait::async_trait;
use futures::TryStreamExt;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use zocalo_core::config::EmailConfig;
use zocalo_core::Secret;

use crate::inbox::MAX_TEXT;
use crate::target::check_address;
use crate::{ChannelError, Inbound, Inbox, InboxMessage, Transport};

/// The channel's name in the inbox, in targets and in conversation keys.
pub const CHANNEL: &str = "email";
/// How long one IDLE waits for news before receive returns (servers drop IDLE after 30 min;
/// the runtime wants to see shutdown and errors much sooner).
pub const IDLE_SECONDS: u64 = 25;
/// Seconds between checks when the server has no IDLE, unless `poll_seconds` says otherwise.
pub const DEFAULT_POLL_SECONDS: u64 = 30;
/// Most new messages taken by one receive; the rest come with the next.
pub const BATCH: usize = 50;
/// Most bytes of one message fetched: a huge attachment is not downloaded whole (the text
/// comes first in any sane mail, and what is cut is parsed as far as it goes).
pub const MAX_FETCH: u32 = 4 * 1024 * 1024;
/// Longest subject line of a notification, in characters.
const SUBJECT_CHARS: usize = 78;
/// Longest Message-ID taken as the external id (a longer one is hashed).
const MAX_MESSAGE_ID: usize = 500;
/// Most Message-IDs kept in a reply's References (the oldest ones are dropped).
const MAX_REFERENCES: usize = 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the IMAP server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapServer {
    pub host: String,
    pub port: u16,
    /// `imaps://`: TLS from the first byte. `imap://` (plain) is only accepted on loopback.
    pub tls: bool,
}

/// How the SMTP server is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`, TLS from the first byte (port 465).
    Tls,
    /// `smtp://`, STARTTLS required (port 587).
    StartTls,
    /// `smtp+plain://`, no TLS: loopback only.
    Plain,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host, port and scheme of a server URL, refusing what would leak or be ignored.
fn server_url(
    what: &str,
    raw: &str,
    key: &str,
    schemes: &[(&str, u16)],
) -> Result<(String, String, u16), ChannelError> {
    let shapes = schemes
        .iter()
        .map(|(s, p)| format!("{s}://HOST[:{p}]"))
        .collect::<Vec<_>>()
        .join(", ");
    let bad = |why: String| {
        ChannelError::Invalid(format!(
            "bad [channels.email] {key} {raw:?}: {why} (the {what} server: {shapes})"
        ))
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| bad(e.to_string()))?;
    let Some(&(scheme, default_port)) = schemes.iter().find(|(s, _)| *s == url.scheme()) else {
        return Err(bad(format!("unknown scheme {:?}", url.scheme())));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "no user or password in the URL: set `user`, and the password in ZOCALO_EMAIL_PASSWORD or `zocalo keys set email`".into(),
        ));
    }
    if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
        return Err(bad("no path or query: just the host and port".into()));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(bad("no host".into())),
    };
    Ok((scheme.to_owned(), host, url.port().unwrap_or(default_port)))
}

impl ImapServer {
    pub fn parse(raw: &str) -> Result<ImapServer, ChannelError> {
        let (scheme, host, port) =
            server_url("IMAP", raw, "imap", &[("imaps", 993), ("imap", 143)])?;
        let tls = scheme == "imaps";
        if !tls && !is_loopback(&host) {
            return Err(ChannelError::Invalid(format!(
                "bad [channels.email] imap {raw:?}: plain imap:// would send the password unencrypted; use imaps://{host} (port 993), plain IMAP is only for a server on this machine"
            )));
        }
        Ok(ImapServer { host, port, tls })
    }
}

impl SmtpServer {
    pub fn parse(raw: &str) -> Result<SmtpServer, ChannelError> {
        let (scheme, host, port) = server_url(
            "SMTP",
            raw,
            "smtp",
            &[("smtps", 465), ("smtp", 587), ("smtp+plain", 25)],
        )?;
        let security = match scheme.as_str() {
            "smtps" => SmtpSecurity::Tls,
            "smtp" => SmtpSecurity::StartTls,
            _ => SmtpSecurity::Plain,
        };
        if security == SmtpSecurity::Plain && !is_loopback(&host) {
            return Err(ChannelError::Invalid(format!(
                "bad [channels.email] smtp {raw:?}: smtp+plain:// would send the password unencrypted; use smtps://{host} (port 465) or smtp://{host} (port 587, STARTTLS), plain SMTP is only for a server on this machine"
            )));
        }
        Ok(SmtpServer {
            host,
            port,
            security,
        })
    }
}

/// A mail as far as the channel cares, from [`parse_mail`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedMail {
    /// The From address, lower case; `None` when there is none or it is unreadable.
    pub from: Option<String>,
    /// The subject, one line, without control characters.
    pub subject: String,
    /// The Message-ID with its angle brackets (`<id@host>`), if it has a usable one.
    pub message_id: Option<String>,
    /// The thread so far: References (or else In-Reply-To), each `<id@host>`.
    pub references: Vec<String>,
    /// The text: the text/plain part (else the HTML one as text), quoted history trimmed,
    /// at most [`MAX_TEXT`] bytes; the subject when the body is empty.
    pub text: String,
    /// Sent by a program (an auto-reply, a bounce, a mailing list): never answered.
    pub automatic: bool,
}

/// `s` on one line: control characters (CR and LF among them) become spaces, runs of spaces
/// one space. What goes back into a header can then not start a new one.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A Message-ID as `<id>`, if it is one we can put back into a header: printable ASCII,
/// no spaces or brackets inside, not absurdly long.
fn clean_id(raw: &str) -> Option<String> {
    let id = raw.trim().trim_start_matches('<').trim_end_matches('>');
    (!id.is_empty()
        && id.len() <= MAX_MESSAGE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>'))
    .then(|| format!("<{id}>"))
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The new part of a reply: the quoted history below it ("On ... wrote:" followed by `>`
/// lines, Outlook's "-----Original Message-----") and the signature after `-- ` are cut.
/// Only the simple shapes: a mail that interleaves answers with quotes keeps its quotes.
pub fn trim_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_end();
        if t == "--" && line.starts_with("-- ") || t == "-----Original Message-----" {
            end = i;
            break;
        }
        let rest_quoted = lines[i + 1..]
            .iter()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('>'));
        if t.starts_with('>') && rest_quoted {
            end = i;
            break;
        }
        let intro = t.starts_with("On ") && t.ends_with("wrote:")
            || t.starts_with("Le ") && t.ends_with("a écrit :")
            || t.starts_with("El ") && t.ends_with("escribió:")
            || t.starts_with("Am ") && t.ends_with("schrieb:");
        if intro && i + 1 < lines.len() && rest_quoted {
            end = i;
            break;
        }
    }
    let kept = lines[..end].join("\n");
    let kept = kept.trim();
    if kept.is_empty() {
        // Nothing but a quote: keep the whole thing rather than answer an empty question.
        text.trim().to_owned()
    } else {
        kept.to_owned()
    }
}

/// Reads one raw mail (RFC 5322, MIME). Never panics: what cannot be read is left empty.
pub fn parse_mail(raw: &[u8]) -> ParsedMail {
    let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
        return ParsedMail::default();
    };
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|a| a.trim().to_lowercase())
        .filter(|a| check_address(a).is_ok());
    let subject = one_line(msg.subject().unwrap_or_default());
    let subject = cut(&subject, 998).to_owned();
    let message_id = msg.message_id().and_then(clean_id);
    let mut references: Vec<String> = msg
        .references()
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| clean_id(r))
        .collect();
    if references.is_empty() {
        references = msg
            .in_reply_to()
            .as_text_list()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| clean_id(r))
            .collect();
    }
    let header = |name: &str| {
        msg.header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let auto_submitted = header("Auto-Submitted");
    let precedence = header("Precedence");
    let automatic = (!auto_submitted.is_empty() && auto_submitted != "no")
        || matches!(precedence.as_str(), "bulk" | "list" | "junk" | "auto_reply")
        || msg.header_raw("List-Id").is_some()
        || msg.header_raw("X-Autoreply").is_some()
        || msg.header_raw("X-Autorespond").is_some();
    let body = msg.body_text(0).unwrap_or_default();
    // Cut before trimming: a huge body is not worth scanning line by line.
    let body = cut(&body, MAX_TEXT * 2);
    let mut text = trim_quoted(&body.replace("\r\n", "\n"));
    if text.is_empty() {
        text = subject.clone();
    }
    let text = if text.len() > MAX_TEXT {
        // Say so, so the model does not answer as if it had read everything.
        let note = "\n[... cut: the mail was too long to read whole]";
        format!("{}{note}", cut(&text, MAX_TEXT - note.len()))
    } else {
        text
    };
    ParsedMail {
        from,
        subject,
        message_id,
        references,
        text,
        automatic,
    }
}

/// `Re: <subject>`, without stacking a second `Re:`.
pub fn reply_subject(subject: &str) -> String {
    let s = one_line(subject);
    if s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")) {
        s
    } else if s.is_empty() {
        "Re: your message".to_owned()
    } else {
        format!("Re: {s}")
    }
}

/// A notification's subject: its first non-empty line, cut.
pub fn notify_subject(text: &str) -> String {
    let first = text
        .lines()
        .map(one_line)
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| "A message from your zocalo".to_owned());
    if first.chars().count() <= SUBJECT_CHARS {
        return first;
    }
    let mut s: String = first.chars().take(SUBJECT_CHARS - 1).collect();
    s.push('…');
    s
}

/// The id under which a mail is recorded: its Message-ID, else one made from where it is.
pub fn external_id(mail: &ParsedMail, uid_validity: u32, uid: u32) -> String {
    match &mail.message_id {
        Some(id) => id.clone(),
        None => {
            let digest = Sha256::digest(format!("{uid_validity}:{uid}").as_bytes());
            format!("imap:{}", hex::encode(&digest[..16]))
        }
    }
}

/// The resume position: `"<UIDVALIDITY>:<last UID>"`.
fn parse_position(s: &str) -> Option<(u32, u32)> {
    let (v, u) = s.split_once(':')?;
    Some((v.parse().ok()?, u.parse().ok()?))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}
type Session = async_imap::Session<Box<dyn Io>>;

/// An open IMAP session with the mailbox selected.
struct Conn {
    session: Session,
    uid_validity: u32,
    /// The next UID the mailbox will give, when the session was opened.
    uid_next: u32,
    idle: bool,
}

/// The email channel.
pub struct Email {
    imap: ImapServer,
    smtp: SmtpServer,
    user: String,
    password: Secret,
    from: Mailbox,
    from_address: String,
    allow: BTreeSet<String>,
    mailbox: String,
    /// Seconds between checks when the server has no IDLE.
    pub poll: Duration,
    /// How long one IDLE waits for news.
    pub idle: Duration,
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    tls: tokio_rustls::TlsConnector,
    conn: Mutex<Option<Conn>>,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("imap", &self.imap)
            .field("smtp", &self.smtp)
            .field("user", &self.user)
            .field("from", &self.from_address)
            .field("allow", &self.allow)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

fn imap_err(what: &str, e: async_imap::error::Error) -> ChannelError {
    ChannelError::Transport(format!("IMAP {what}: {e}"))
}

fn smtp_err(server: &SmtpServer, user: &str, e: lettre::transport::smtp::Error) -> ChannelError {
    if e.status()
        .is_some_and(|c| c.to_string() == "535" || c.to_string() == "534")
    {
        return ChannelError::Unauthorized(format!(
            "the SMTP server {}:{} refused the login for {user} ({e}): check the password (ZOCALO_EMAIL_PASSWORD or `zocalo keys set email`; Gmail and Fastmail need an app password)",
            server.host, server.port
        ));
    }
    if e.is_permanent() {
        return ChannelError::Api {
            service: "SMTP",
            code: e.status().map(|c| i64::from(u16::from(c))).unwrap_or(550),
            description: e.to_string(),
        };
    }
    ChannelError::Transport(format!("SMTP {}:{}: {e}", server.host, server.port))
}

/// The TLS client for `imaps://`: the public (Mozilla) roots and `extra_roots` (DER).
fn imap_tls(extra_roots: &[Vec<u8>]) -> Result<tokio_rustls::TlsConnector, ChannelError> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| ChannelError::Invalid(format!("bad CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ChannelError::Transport(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn timed<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, ChannelError>>,
) -> Result<T, ChannelError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ChannelError::Transport(format!("{what}: no answer within {limit:?}")))?
}

impl Email {
    /// The channel for `cfg`, logging in with `password`. Checks every URL and address now,
    /// so a mistake shows at start-up rather than at the first mail.
    pub fn new(cfg: &EmailConfig, password: Secret) -> Result<Email, ChannelError> {
        let imap = ImapServer::parse(&cfg.imap)?;
        let smtp = SmtpServer::parse(&cfg.smtp)?;
        let user = cfg.user.trim().to_owned();
        if user.is_empty() || user.chars().any(|c| c.is_control()) {
            return Err(ChannelError::Invalid(
                "[channels.email] user is empty or has control characters: set the login of the mailbox (usually its address)".into(),
            ));
        }
        if password.expose().is_empty() {
            return Err(ChannelError::Invalid(
                "no email password: set ZOCALO_EMAIL_PASSWORD or run `zocalo keys set email` (Gmail and Fastmail need an app password)".into(),
            ));
        }
        let from_address = cfg.from.as_deref().unwrap_or(&user).trim().to_owned();
        check_address(&from_address).map_err(|e| {
            ChannelError::Invalid(format!(
                "[channels.email] from (default: user): {e}; set `from` to the mailbox's address"
            ))
        })?;
        let from: Mailbox = from_address.parse().map_err(|e| {
            ChannelError::Invalid(format!(
                "[channels.email] from {from_address:?} is not a mail address: {e}"
            ))
        })?;
        let mut allow = BTreeSet::new();
        for a in &cfg.allow {
            let a = a.trim().to_lowercase();
            check_address(&a)
                .map_err(|e| ChannelError::Invalid(format!("[channels.email] allow: {e}")))?;
            allow.insert(a);
        }
        let mailbox = cfg.mailbox.as_deref().unwrap_or("INBOX").trim().to_owned();
        if mailbox.is_empty() || mailbox.chars().any(|c| c.is_control() || c == '"') {
            return Err(ChannelError::Invalid(format!(
                "[channels.email] mailbox {mailbox:?}: a mailbox name such as INBOX"
            )));
        }
        let poll_seconds = cfg.poll_seconds.unwrap_or(DEFAULT_POLL_SECONDS);
        if poll_seconds == 0 || poll_seconds > 3600 {
            return Err(ChannelError::Invalid(format!(
                "[channels.email] poll_seconds = {poll_seconds}: use 1 to 3600"
            )));
        }
        let mailer = Self::mailer(&smtp, &user, &password, &[])?;
        Ok(Email {
            imap,
            smtp,
            user,
            password,
            from,
            from_address: from_address.to_lowercase(),
            allow,
            mailbox,
            poll: Duration::from_secs(poll_seconds),
            idle: Duration::from_secs(IDLE_SECONDS),
            mailer,
            tls: imap_tls(&[])?,
            conn: Mutex::new(None),
        })
    }

    fn mailer(
        smtp: &SmtpServer,
        user: &str,
        password: &Secret,
        extra_roots: &[Vec<u8>],
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, ChannelError> {
        let bad = |e: lettre::transport::smtp::Error| {
            ChannelError::Invalid(format!("[channels.email] smtp {}: {e}", smtp.host))
        };
        let mut params = TlsParameters::builder(smtp.host.clone());
        for der in extra_roots {
            params = params.add_root_certificate(Certificate::from_der(der.clone()).map_err(bad)?);
        }
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone());
        let builder = match smtp.security {
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(params.build_rustls().map_err(bad)?)),
            SmtpSecurity::StartTls => {
                builder.tls(Tls::Required(params.build_rustls().map_err(bad)?))
            }
            SmtpSecurity::Plain => builder.tls(Tls::None),
        };
        Ok(builder
            .port(smtp.port)
            .credentials(Credentials::new(
                user.to_owned(),
                password.expose().to_owned(),
            ))
            .timeout(Some(COMMAND_TIMEOUT))
            .build())
    }

    /// Also trusts the CA certificates in `pem` (PEM text), for IMAP and SMTP: for a mail
    /// server whose certificate comes from a private CA (a home server, the tests' servers).
    /// The public roots stay trusted.
    pub fn trust_pem(&mut self, pem: &str) -> Result<(), ChannelError> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::CertificateDer;
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ChannelError::Invalid(format!("bad CA certificate PEM: {e}")))?;
        if roots.is_empty() {
            return Err(ChannelError::Invalid(
                "no certificate in the CA PEM (expected -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        self.tls = imap_tls(&roots)?;
        self.mailer = Self::mailer(&self.smtp, &self.user, &self.password, &roots)?;
        Ok(())
    }

    /// The allowed senders, lower case.
    pub fn allow(&self) -> &BTreeSet<String> {
        &self.allow
    }

    /// Connects, logs in and selects the mailbox.
    async fn connect(&self) -> Result<Conn, ChannelError> {
        let ImapServer { host, port, tls } = &self.imap;
        let tcp = timed("IMAP connect", CONNECT_TIMEOUT, async {
            TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| {
                    ChannelError::Transport(format!("IMAP: cannot connect to {host}:{port}: {e}"))
                })
        })
        .await?;
        let stream: Box<dyn Io> = if *tls {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| ChannelError::Invalid(format!("IMAP host {host:?}: {e}")))?;
            let s = timed("IMAP TLS handshake", CONNECT_TIMEOUT, async {
                self.tls.connect(name, tcp).await.map_err(|e| {
                    ChannelError::Transport(format!("IMAP TLS with {host}:{port}: {e}"))
                })
            })
            .await?;
            Box::new(s)
        } else {
            Box::new(tcp)
        };
        let mut client = async_imap::Client::new(stream);
        let greeting = timed("IMAP greeting", CONNECT_TIMEOUT, async {
            client
                .read_response()
                .await
                .map_err(|e| ChannelError::Transport(format!("IMAP greeting: {e}")))
        })
        .await?;
        if greeting.is_none() {
            return Err(ChannelError::Transport(format!(
                "IMAP {host}:{port} closed the connection before greeting"
            )));
        }
        let mut session = timed("IMAP login", COMMAND_TIMEOUT, async {
            client
                .login(&self.user, self.password.expose())
                .await
                .map_err(|(e, _)| match e {
                    async_imap::error::Error::No(why) | async_imap::error::Error::Bad(why) => {
                        ChannelError::Unauthorized(format!(
                            "the IMAP server {host}:{port} refused the login for {} ({}): check the password (ZOCALO_EMAIL_PASSWORD or `zocalo keys set email`; Gmail and Fastmail need an app password)",
                            self.user,
                            why.trim()
                        ))
                    }
                    other => imap_err("login", other),
                })
        })
        .await?;
        let mailbox = timed("IMAP select", COMMAND_TIMEOUT, async {
            session.select(&self.mailbox).await.map_err(|e| match e {
                async_imap::error::Error::No(why) => ChannelError::Invalid(format!(
                    "the IMAP server has no mailbox {:?} ({}): check [channels.email] mailbox",
                    self.mailbox,
                    why.trim()
                )),
                other => imap_err("select", other),
            })
        })
        .await?;
        let uid_validity = mailbox.uid_validity.ok_or_else(|| {
            ChannelError::Transport("IMAP: the server gave no UIDVALIDITY for the mailbox".into())
        })?;
        let uid_next = match mailbox.uid_next {
            Some(n) => n,
            None => Self::highest_uid(&mut session).await?.saturating_add(1),
        };
        let caps = timed("IMAP capabilities", COMMAND_TIMEOUT, async {
            session
                .capabilities()
                .await
                .map_err(|e| imap_err("capability", e))
        })
        .await?;
        Ok(Conn {
            session,
            uid_validity,
            uid_next,
            idle: caps.has_str("IDLE"),
        })
    }

    async fn highest_uid(session: &mut Session) -> Result<u32, ChannelError> {
        timed("IMAP fetch", COMMAND_TIMEOUT, async {
            let fetches: Vec<_> = session
                .uid_fetch("*", "UID")
                .await
                .map_err(|e| imap_err("fetch", e))?
                .try_collect()
                .await
                .map_err(|e| imap_err("fetch", e))?;
            Ok(fetches.iter().filter_map(|f| f.uid).max().unwrap_or(0))
        })
        .await
    }

    /// The raw mails with UIDs above `last` (at most [`BATCH`]), oldest first.
    async fn fetch_new(conn: &mut Conn, last: u32) -> Result<Vec<(u32, Vec<u8>)>, ChannelError> {
        let session = &mut conn.session;
        timed("IMAP fetch", COMMAND_TIMEOUT, async {
            let from = last.saturating_add(1);
            let uids = session
                .uid_search(format!("UID {from}:*"))
                .await
                .map_err(|e| imap_err("search", e))?;
            // `N:*` always matches the highest UID, even below N: keep only the new ones.
            let mut uids: Vec<u32> = uids.into_iter().filter(|u| *u > last).collect();
            uids.sort_unstable();
            uids.truncate(BATCH);
            if uids.is_empty() {
                return Ok(Vec::new());
            }
            let set = uids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let fetches: Vec<_> = session
                .uid_fetch(&set, format!("(UID BODY.PEEK[]<0.{MAX_FETCH}>)"))
                .await
                .map_err(|e| imap_err("fetch", e))?
                .try_collect()
                .await
                .map_err(|e| imap_err("fetch", e))?;
            let mut out: Vec<(u32, Vec<u8>)> = fetches
                .iter()
                .filter_map(|f| {
                    let uid = f.uid?;
                    (uid > last).then(|| (uid, f.body().unwrap_or_default().to_vec()))
                })
                .collect();
            out.sort_by_key(|(uid, _)| *uid);
            // A UID the search found but the fetch did not return was expunged in between;
            // still move past it.
            if let Some(max) = uids.last() {
                if out.last().is_none_or(|(u, _)| u < max) {
                    out.push((*max, Vec::new()));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Waits for news: IDLE up to [`Email::idle`], or a sleep of `poll_seconds` then NOOP.
    async fn wait(&self, conn: Conn) -> Result<Conn, ChannelError> {
        let Conn {
            session,
            uid_validity,
            uid_next,
            idle,
        } = conn;
        let session = if idle {
            let mut handle = session.idle();
            timed("IMAP IDLE", COMMAND_TIMEOUT, async {
                handle.init().await.map_err(|e| imap_err("IDLE", e))
            })
            .await?;
            let (wait, _stop) = handle.wait_with_timeout(self.idle);
            match wait.await.map_err(|e| imap_err("IDLE", e))? {
                IdleResponse::NewData(_) => tracing::debug!("email: IMAP IDLE says there is news"),
                IdleResponse::Timeout | IdleResponse::ManualInterrupt => {}
            }
            timed("IMAP DONE", COMMAND_TIMEOUT, async {
                handle.done().await.map_err(|e| imap_err("IDLE done", e))
            })
            .await?
        } else {
            let mut session = session;
            tokio::time::sleep(self.poll).await;
            timed("IMAP NOOP", COMMAND_TIMEOUT, async {
                session.noop().await.map_err(|e| imap_err("noop", e))
            })
            .await?;
            session
        };
        Ok(Conn {
            session,
            uid_validity,
            uid_next,
            idle,
        })
    }

    /// What the channel records of one fetched mail: `None` for mail that is skipped (no
    /// usable sender, a sender outside the allowlist, our own mail, automatic mail).
    pub fn inbound(&self, mail: &ParsedMail, uid_validity: u32, uid: u32) -> Option<Inbound> {
        let Some(from) = &mail.from else {
            tracing::info!(uid, "email: skipped a mail without a readable From address");
            return None;
        };
        if *from == self.from_address {
            return None;
        }
        if !self.allow.contains(from) {
            tracing::info!(
                uid,
                sender = %from,
                "email: skipped a mail from a sender outside [channels.email] allow (not answered, not stored)"
            );
            return None;
        }
        if mail.automatic {
            tracing::info!(uid, sender = %from, "email: skipped an automatic mail (auto-reply, bounce or list)");
            return None;
        }
        Some(Inbound {
            external_id: external_id(mail, uid_validity, uid),
            sender: from.clone(),
            conv_key: format!("email:{from}"),
            text: mail.text.clone(),
            reply_to: json!({
                "from": from,
                "subject": mail.subject,
                "message_id": mail.message_id,
                "references": mail.references,
            }),
        })
    }

    async fn receive_on(
        &self,
        inbox: &Inbox,
        slot: &mut Option<Conn>,
    ) -> Result<usize, ChannelError> {
        let mut conn = match slot.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let cursor = inbox.cursor(CHANNEL).await?;
        let known = cursor.resume_from.as_deref().and_then(parse_position);
        let last = match known {
            Some((v, last)) if v == conn.uid_validity => last,
            other => {
                let last = conn.uid_next.saturating_sub(1);
                match other {
                    Some((v, _)) => tracing::warn!(
                        old = v,
                        new = conn.uid_validity,
                        "email: the mailbox's UIDVALIDITY changed (it was rebuilt or replaced): starting from its current end, mail already there is not answered"
                    ),
                    None => tracing::info!(
                        mailbox = %self.mailbox,
                        "email: first look at the mailbox: starting from its current end, mail already there is not answered"
                    ),
                }
                let pos = format!("{}:{last}", conn.uid_validity);
                inbox.receive(CHANNEL, &[], Some(&pos)).await?;
                *slot = Some(conn);
                return Ok(0);
            }
        };
        let mut fetched = Self::fetch_new(&mut conn, last).await?;
        if fetched.is_empty() {
            conn = self.wait(conn).await?;
            fetched = Self::fetch_new(&mut conn, last).await?;
        }
        let Some(max) = fetched.iter().map(|(u, _)| *u).max() else {
            *slot = Some(conn);
            return Ok(0);
        };
        let accepted: Vec<Inbound> = fetched
            .iter()
            .filter_map(|(uid, raw)| self.inbound(&parse_mail(raw), conn.uid_validity, *uid))
            .collect();
        let pos = format!("{}:{max}", conn.uid_validity);
        let new = inbox.receive(CHANNEL, &accepted, Some(&pos)).await?;
        *slot = Some(conn);
        Ok(new)
    }

    async fn send(&self, message: Message) -> Result<(), ChannelError> {
        self.mailer
            .send(message)
            .await
            .map(drop)
            .map_err(|e| smtp_err(&self.smtp, &self.user, e))
    }

    fn message_id(&self) -> String {
        let domain = self
            .from_address
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("zocalo.invalid");
        format!("<{}@{domain}>", zocalo_core::ids::new_prefixed("zocalo"))
    }

    fn recipient(to: &str) -> Result<Mailbox, ChannelError> {
        check_address(to)?;
        to.parse::<Mailbox>()
            .map_err(|e| ChannelError::Invalid(format!("bad mail address {to:?}: {e}")))
    }

    /// The reply to a recorded mail, as it is sent.
    pub fn reply_message(&self, msg: &InboxMessage, text: &str) -> Result<Message, ChannelError> {
        let r = &msg.reply_to;
        let to = r["from"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or(&msg.sender);
        let subject = reply_subject(r["subject"].as_str().unwrap_or_default());
        let original = r["message_id"].as_str().and_then(clean_id);
        let mut references: Vec<String> = match &r["references"] {
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().and_then(clean_id))
                .collect(),
            _ => Vec::new(),
        };
        if let Some(id) = &original {
            references.push(id.clone());
        }
        if references.len() > MAX_REFERENCES {
            // Keep the thread's first mail (it names the thread) and the latest ones.
            let tail = references.split_off(references.len() - (MAX_REFERENCES - 1));
            references.truncate(1);
            references.extend(tail);
        }
        let body = if text.trim().is_empty() {
            "(no answer)".to_owned()
        } else {
            text.to_owned()
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Self::recipient(to)?)
            .subject(subject)
            .message_id(Some(self.message_id()));
        if let Some(id) = original {
            builder = builder.in_reply_to(id);
        }
        if !references.is_empty() {
            builder = builder.references(references.join(" "));
        }
        builder
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| ChannelError::Invalid(format!("the reply could not be built: {e}")))
    }

    /// A new mail to `to` with `text`, its first line as the subject.
    pub fn notify_message(&self, to: &str, text: &str) -> Result<Message, ChannelError> {
        Message::builder()
            .from(self.from.clone())
            .to(Self::recipient(to)?)
            .subject(notify_subject(text))
            .message_id(Some(self.message_id()))
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned())
            .map_err(|e| ChannelError::Invalid(format!("the mail could not be built: {e}")))
    }
}

#[async_trait]
impl Transport for Email {
    fn channel(&self) -> &str {
        CHANNEL
    }

    async fn receive(&self, inbox: &Inbox) -> Result<usize, ChannelError> {
        let mut slot = self.conn.lock().await;
        // On any error the session is dropped (it may be mid-command). A session kept from
        // the last receive may have been closed by the server or a NAT while the answers were
        // made: one connection error on it is retried at once on a fresh session.
        let reused = slot.is_some();
        match self.receive_on(inbox, &mut slot).await {
            Err(ChannelError::Transport(e)) if reused => {
                tracing::info!("email: the IMAP session was lost ({e}); connecting again");
                self.receive_on(inbox, &mut slot).await
            }
            other => other,
        }
    }

    async fn reply(&self, msg: &InboxMessage, text: &str) -> Result<(), ChannelError> {
        let message = self.reply_message(msg, text)?;
        self.send(message).await
    }

    async fn notify(&self, to: &str, text: &str) -> Result<(), ChannelError> {
        let message = self.notify_message(to, text)?;
        self.send(message).await
    }

    async fn check(&self) -> Result<String, ChannelError> {
        let mut conn = self.connect().await?;
        let idle = conn.idle;
        if let Err(e) = conn.session.logout().await {
            tracing::debug!("email: IMAP logout after the check: {e}");
        }
        let ok = self
            .mailer
            .test_connection()
            .await
            .map_err(|e| smtp_err(&self.smtp, &self.user, e))?;
        if !ok {
            return Err(ChannelError::Transport(format!(
                "SMTP {}:{}: the connection did not answer",
                self.smtp.host, self.smtp.port
            )));
        }
        Ok(format!(
            "{} on {} ({}, {}), sending as {} via {}:{}, {} allowed sender(s)",
            self.user,
            self.imap.host,
            self.mailbox,
            if idle { "IDLE" } else { "polling" },
            self.from_address,
            self.smtp.host,
            self.smtp.port,
            self.allow.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> EmailConfig {
        EmailConfig {
            imap: "imaps://imap.example.org".into(),
            smtp: "smtps://smtp.example.org".into(),
            user: "bot@example.org".into(),
            allow: vec!["Me@Example.org".into(), "bot@example.org".into()],
            ..EmailConfig::default()
        }
    }

    fn email() -> Email {
        Email::new(&cfg(), Secret::new("pw")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn invalid(c: EmailConfig, password: &str, needle: &str) {
        match Email::new(&c, Secret::new(password)) {
            Err(ChannelError::Invalid(why)) => assert!(why.contains(needle), "{why}"),
            other => panic!("expected Invalid with {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn server_urls_take_default_ports_and_refuse_plain_text_off_loopback() {
        assert_eq!(
            ImapServer::parse("imaps://imap.gmail.com").ok(),
            Some(ImapServer {
                host: "imap.gmail.com".into(),
                port: 993,
                tls: true
            })
        );
        assert_eq!(
            ImapServer::parse("imap://127.0.0.1:1143")
                .map(|s| s.port)
                .ok(),
            Some(1143)
        );
        assert_eq!(
            ImapServer::parse("imap://[::1]").map(|s| s.port).ok(),
            Some(143)
        );
        assert_eq!(
            SmtpServer::parse("smtp://smtp.fastmail.com").ok(),
            Some(SmtpServer {
                host: "smtp.fastmail.com".into(),
                port: 587,
                security: SmtpSecurity::StartTls
            })
        );
        assert_eq!(
            SmtpServer::parse("smtps://smtp.gmail.com")
                .map(|s| s.port)
                .ok(),
            Some(465)
        );
        assert_eq!(
            SmtpServer::parse("smtp+plain://localhost:2525")
                .map(|s| s.security)
                .ok(),
            Some(SmtpSecurity::Plain)
        );
        for bad in [
            "imap://imap.example.org",
            "http://imap.example.org",
            "imaps://user:pw@imap.example.org",
            "imaps://imap.example.org/INBOX",
            "imaps://",
            "not a url",
        ] {
            assert!(
                matches!(ImapServer::parse(bad), Err(ChannelError::Invalid(_))),
                "{bad}"
            );
        }
        for bad in [
            "smtp+plain://smtp.example.org:25",
            "ftp://x",
            "smtps://a@b.org@host",
        ] {
            assert!(
                matches!(SmtpServer::parse(bad), Err(ChannelError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_config_is_checked_up_front_with_what_to_fix() {
        assert!(Email::new(&cfg(), Secret::new("pw")).is_ok());
        invalid(cfg(), "", "ZOCALO_EMAIL_PASSWORD");
        invalid(
            EmailConfig {
                imap: "imap://imap.example.org".into(),
                ..cfg()
            },
            "pw",
            "imaps://",
        );
        invalid(
            EmailConfig {
                smtp: "smtp.example.org".into(),
                ..cfg()
            },
            "pw",
            "smtp",
        );
        invalid(
            EmailConfig {
                user: " ".into(),
                ..cfg()
            },
            "pw",
            "user",
        );
        invalid(
            EmailConfig {
                user: "bot".into(),
                ..cfg()
            },
            "pw",
            "set `from`",
        );
        assert!(Email::new(
            &EmailConfig {
                user: "bot".into(),
                from: Some("bot@example.org".into()),
                ..cfg()
            },
            Secret::new("pw")
        )
        .is_ok());
        invalid(
            EmailConfig {
                allow: vec!["me@x.org, you@y.org".into()],
                ..cfg()
            },
            "pw",
            "allow",
        );
        invalid(
            EmailConfig {
                mailbox: Some("".into()),
                ..cfg()
            },
            "pw",
            "mailbox",
        );
        invalid(
            EmailConfig {
                poll_seconds: Some(0),
                ..cfg()
            },
            "pw",
            "poll_seconds",
        );
        assert_eq!(
            email().allow().iter().collect::<Vec<_>>(),
            ["bot@example.org", "me@example.org"]
        );
        // The password never shows in Debug.
        assert!(
            !format!("{:?}", Email::new(&cfg(), Secret::new("hunter22")).ok()).contains("hunter22")
        );
    }

    #[test]
    fn a_ca_pem_without_certificates_is_refused() {
        let mut e = email();
        for bad in [
            "",
            "not pem",
            "-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(e.trust_pem(bad), Err(ChannelError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_plain_mail_is_read_with_its_thread() {
        let raw = b"From: \"Me\" <ME@Example.org>\r\nTo: bot@example.org\r\n\
Subject: =?utf-8?q?Caf=C3=A9?= plans\r\nMessage-ID: <abc@example.org>\r\n\
In-Reply-To: <b@x>\r\nReferences: <a@x>\r\n <b@x>\r\n\r\nLunch tomorrow?\r\n\r\n\
On Mon, 7 Dec 2026, Bot wrote:\r\n> Yesterday's answer\r\n> more\r\n";
        let m = parse_mail(raw);
        assert_eq!(m.from.as_deref(), Some("me@example.org"));
        assert_eq!(m.subject, "Café plans");
        assert_eq!(m.message_id.as_deref(), Some("<abc@example.org>"));
        assert_eq!(m.references, ["<a@x>", "<b@x>"]);
        assert_eq!(m.text, "Lunch tomorrow?");
        assert!(!m.automatic);
    }

    #[test]
    fn html_only_mail_becomes_text_and_an_empty_body_takes_the_subject() {
        let raw = b"From: me@example.org\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n\
<html><body><p>Hello <b>world</b></p><script>x</script></body></html>\r\n";
        let m = parse_mail(raw);
        assert!(
            m.text.contains("Hello") && m.text.contains("world"),
            "{:?}",
            m.text
        );
        assert!(!m.text.contains('<'), "{:?}", m.text);
        let m = parse_mail(b"From: me@example.org\r\nSubject: what time is it?\r\n\r\n\r\n");
        assert_eq!(m.text, "what time is it?");
    }

    #[test]
    fn automatic_mail_is_marked() {
        for h in [
            "Auto-Submitted: auto-replied",
            "Precedence: bulk",
            "List-Id: <x.example.org>",
            "X-Autoreply: yes",
        ] {
            let raw = format!("From: me@example.org\r\n{h}\r\nSubject: s\r\n\r\nOut of office\r\n");
            assert!(parse_mail(raw.as_bytes()).automatic, "{h}");
        }
        let raw = b"From: me@example.org\r\nAuto-Submitted: no\r\n\r\nhi\r\n";
        assert!(!parse_mail(raw).automatic);
    }

    #[test]
    fn malformed_mail_gives_what_can_be_read() {
        assert_eq!(parse_mail(b""), ParsedMail::default());
        let m = parse_mail(b"Subject: no sender\r\n\r\nbody\r\n");
        assert_eq!(m.from, None);
        let m = parse_mail(b"From: not an address\r\nMessage-ID: <has space@x>\r\n\r\nbody\r\n");
        assert_eq!(m.from, None);
        assert_eq!(m.message_id, None);
        let m =
            parse_mail(b"From: a@b.org\r\nSubject: a\r\n\tb\r\nMessage-ID: <\x01@x>\r\n\r\nx\r\n");
        assert!(!m.subject.contains(['\r', '\n', '\t']), "{:?}", m.subject);
        assert_eq!(m.message_id, None);
        let huge = format!("From: a@b.org\r\n\r\n{}", "x".repeat(3 * MAX_TEXT));
        let text = parse_mail(huge.as_bytes()).text;
        assert!(
            text.len() <= MAX_TEXT && text.len() > MAX_TEXT - 100,
            "{}",
            text.len()
        );
        assert!(text.ends_with("[... cut: the mail was too long to read whole]"));
    }

    #[test]
    fn quoted_history_and_signatures_are_trimmed_only_in_the_simple_shapes() {
        assert_eq!(
            trim_quoted("Yes.\n\nOn Tue, Ana wrote:\n> Lunch?\n>\n> A."),
            "Yes."
        );
        assert_eq!(trim_quoted("Yes.\n> Lunch?\n> more"), "Yes.");
        assert_eq!(trim_quoted("Yes.\n-- \nAna\nPhone 123"), "Yes.");
        assert_eq!(
            trim_quoted("Yes.\n-----Original Message-----\nFrom: x"),
            "Yes."
        );
        // Answers between quotes keep everything.
        let inline = "> Lunch?\nYes.\n> Where?\nHere.";
        assert_eq!(trim_quoted(inline), inline);
        // Only a quote: kept rather than asking nothing.
        assert_eq!(trim_quoted("> forwarded words"), "> forwarded words");
        // "On ... wrote:" in the middle of prose is not a quote intro.
        let prose = "On Monday Ana wrote:\nthe report is done.";
        assert_eq!(trim_quoted(prose), prose);
    }

    #[test]
    fn subjects_for_replies_and_notifications() {
        assert_eq!(reply_subject("Plans"), "Re: Plans");
        assert_eq!(reply_subject("Re: Plans"), "Re: Plans");
        assert_eq!(reply_subject("RE: Plans"), "RE: Plans");
        assert_eq!(reply_subject(""), "Re: your message");
        assert_eq!(reply_subject("a\r\nBcc: x@y.z"), "Re: a Bcc: x@y.z");
        assert_eq!(notify_subject("\n\nBackup done\nAll fine"), "Backup done");
        assert_eq!(notify_subject(""), "A message from your zocalo");
        let long = notify_subject(&"word ".repeat(40));
        assert_eq!(long.chars().count(), SUBJECT_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn only_allowed_people_are_recorded_never_ourselves_or_robots() {
        let e = email();
        let mail = |from: &str, automatic: bool| ParsedMail {
            from: Some(from.into()),
            subject: "s".into(),
            message_id: Some("<m@x>".into()),
            text: "hi".into(),
            automatic,
            ..ParsedMail::default()
        };
        let got = e.inbound(&mail("me@example.org", false), 7, 3);
        let got = got.unwrap_or_else(|| panic!("me is allowed"));
        assert_eq!(got.conv_key, "email:me@example.org");
        assert_eq!(got.external_id, "<m@x>");
        assert_eq!(got.reply_to["references"], json!([]));
        assert!(e.inbound(&mail("you@example.org", false), 7, 3).is_none());
        assert!(e.inbound(&mail("me@example.org", true), 7, 3).is_none());
        // Allowed, but it is the bot's own address: its own mail is never answered.
        assert!(e.inbound(&mail("bot@example.org", false), 7, 3).is_none());
        assert!(e.inbound(&ParsedMail::default(), 7, 3).is_none());
    }

    #[test]
    fn without_a_message_id_the_external_id_is_the_mailbox_position() {
        let m = ParsedMail::default();
        assert_eq!(external_id(&m, 7, 3), external_id(&m, 7, 3));
        assert_ne!(external_id(&m, 7, 3), external_id(&m, 7, 4));
        assert_ne!(external_id(&m, 7, 3), external_id(&m, 8, 3));
        assert!(external_id(&m, 7, 3).starts_with("imap:"));
        assert_eq!(parse_position("7:3"), Some((7, 3)));
        assert_eq!(parse_position("7"), None);
        assert_eq!(parse_position("x:3"), None);
    }

    fn inbox_message(reply_to: Value) -> InboxMessage {
        InboxMessage {
            id: "inb_1".into(),
            channel: "email".into(),
            external_id: "<m@x>".into(),
            sender: "me@example.org".into(),
            conv_key: "email:me@example.org".into(),
            text: "q".into(),
            reply_to,
            state: crate::InboxState::Received,
            answer: None,
            error: None,
            attempts: 0,
            created_at: 0,
        }
    }

    fn formatted(m: &Message) -> String {
        String::from_utf8_lossy(&m.formatted()).replace("\r\n ", " ")
    }

    #[test]
    fn a_reply_threads_and_keeps_the_references_bounded() {
        let refs: Vec<String> = (0..30).map(|i| format!("<r{i}@x>")).collect();
        let msg = inbox_message(json!({
            "from": "me@example.org", "subject": "Re: Plans", "message_id": "<m@x>",
            "references": refs,
        }));
        let out = formatted(
            &email()
                .reply_message(&msg, "Sure.")
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(out.contains("Subject: Re: Plans\r\n"), "{out}");
        assert!(out.contains("In-Reply-To: <m@x>\r\n"), "{out}");
        assert!(out.contains("To: me@example.org\r\n"), "{out}");
        let references = out
            .lines()
            .find_map(|l| l.strip_prefix("References: "))
            .unwrap_or_else(|| panic!("{out}"));
        let ids: Vec<&str> = references.split(' ').collect();
        assert_eq!(ids.len(), MAX_REFERENCES);
        assert_eq!(ids[0], "<r0@x>");
        assert_eq!(ids[MAX_REFERENCES - 1], "<m@x>");
        assert_eq!(ids[MAX_REFERENCES - 2], "<r29@x>");
        // A stored reply_to that was tampered with cannot add a recipient.
        let bad = inbox_message(json!({"from": "me@example.org, x@evil.org", "subject": "s"}));
        assert!(matches!(
            email().reply_message(&bad, "x"),
            Err(ChannelError::Invalid(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_bytes_parse_without_panicking(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let m = parse_mail(&raw);
            prop_assert!(m.text.len() <= MAX_TEXT);
            prop_assert!(!m.subject.contains(['\r', '\n']));
            if let Some(from) = &m.from {
                prop_assert!(check_address(from).is_ok());
                prop_assert_eq!(from.to_lowercase(), from.clone());
            }
            for id in m.message_id.iter().chain(&m.references) {
                prop_assert!(id.starts_with('<') && id.ends_with('>'));
                prop_assert!(id.bytes().all(|b| b.is_ascii_graphic()));
            }
        }

        #[test]
        fn subjects_stay_one_line_and_trimming_never_grows_text(text in "(\\PC|\r|\n|>){0,300}") {
            let r = reply_subject(&text);
            prop_assert!(!r.contains(['\r', '\n']));
            prop_assert!(r.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")));
            let n = notify_subject(&text);
            prop_assert!(!n.is_empty() && !n.contains(['\r', '\n']));
            prop_assert!(n.chars().count() <= SUBJECT_CHARS);
            prop_assert!(trim_quoted(&text).len() <= text.len());
        }

        #[test]
        fn mail_shaped_input_parses_without_panicking(
            headers in proptest::collection::vec(
                ("(From|To|Subject|Message-ID|References|In-Reply-To|Content-Type|Content-Transfer-Encoding|MIME-Version|Auto-Submitted)",
                 "[ -~\\t]{0,60}"), 0..8),
            body in "\\PC{0,400}",
        ) {
            let mut raw = String::new();
            for (k, v) in &headers {
                raw.push_str(&format!("{k}: {v}\r\n"));
            }
            raw.push_str("\r\n");
            raw.push_str(&body);
            let m = parse_mail(raw.as_bytes());
            prop_assert!(m.text.len() <= MAX_TEXT);
            let _ = reply_subject(&m.subject);
        }
    }
}
