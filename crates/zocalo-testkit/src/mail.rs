//! Real mail servers on loopback for the email channel's tests: Dovecot (IMAP, with IDLE) and
//! an SMTP server (Python's aiosmtpd, with AUTH) that delivers into the same users' Maildirs,
//! so what is sent over SMTP is read back over IMAP. Both come from Debian's packages
//! (`dovecot-imapd`, `python3-aiosmtpd`), installed by `./x test`; each [`MailServers`] runs
//! from a temp directory with generated configs, on free ports, with a passwd-file of users.
//!
//! Without the packages a test skips with the reason, unless `ZOCALO_REQUIRE_MAIL=1` (set by
//! `./x test`) or `CI` is set: then it fails, saying to run `./x test`.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The SMTP server: accepts mail for the configured users (others get 550), checks AUTH
/// against the same passwords (535 when wrong; AUTH is optional, so a test can inject mail
/// as anyone), and adds each message to the recipient's Maildir, where Dovecot reads it.
const SMTP_SERVER: &str = r#"
import json, mailbox, os, signal, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cfg = json.load(open(sys.argv[1]))
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
if cfg.get("gid") is not None:
    os.setgroups([])
    os.setgid(cfg["gid"])
if cfg.get("uid") is not None:
    os.setuid(cfg["uid"])
users = {k.lower(): v for k, v in cfg["users"].items()}

class Deliver:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() not in users:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            box = mailbox.Maildir(users[rcpt.lower()]["maildir"], create=True)
            box.add(envelope.original_content)
        return "250 2.0.0 delivered"

def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    user = users.get(auth_data.login.decode("utf-8", "replace").lower())
    ok = user is not None and user["password"] == auth_data.password.decode("utf-8", "replace")
    return AuthResult(success=ok, handled=False)

controller = Controller(Deliver(), hostname="127.0.0.1", port=cfg["port"],
                        authenticator=authenticator, auth_required=False,
                        auth_require_tls=False)
controller.start()
if cfg.get("tls_port"):
    import ssl
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cfg["cert"], cfg["key"])
    # Implicit TLS (smtps, as on port 465).
    tls = Controller(Deliver(), hostname="127.0.0.1", port=cfg["tls_port"],
                     authenticator=authenticator, auth_required=False,
                     auth_require_tls=False, ssl_context=context)
    tls.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
controller.stop()
"#;

/// Mail servers that must be there: `ZOCALO_REQUIRE_MAIL=1` (set by `./x test`) or CI.
pub fn mail_required() -> bool {
    std::env::var("ZOCALO_REQUIRE_MAIL").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Why the servers cannot start.
#[derive(Debug)]
pub enum MailError {
    /// A package is not installed.
    Missing(String),
    /// Installed, but it did not start.
    Failed(String),
}

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailError::Missing(why) => write!(
                f,
                "{why}: run `./x test` (it installs dovecot-imapd and python3-aiosmtpd from Debian's packages)"
            ),
            MailError::Failed(why) => f.write_str(why),
        }
    }
}

/// How the servers differ from the plain default.
#[derive(Clone, Copy, Debug, Default)]
pub struct MailOptions {
    /// Dovecot does not offer IDLE (how a client's polling path meets such a server).
    pub no_idle: bool,
    /// Also serve IMAP and SMTP over implicit TLS (imaps, smtps), with a certificate for
    /// `localhost` and 127.0.0.1 from a CA made for the occasion.
    pub tls: bool,
}

/// A CA and a server certificate it signed (`server.pem`, `server.key` in `dir`), made with
/// the openssl command; returns the CA's PEM.
fn make_certificates(dir: &Path) -> Result<String, MailError> {
    let openssl = |args: &[&str]| -> Result<(), MailError> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| MailError::Missing(format!("the openssl command is not there ({e})")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(MailError::Failed(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    write(
        &dir.join("server.ext"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
    )?;
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=zocalo test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    // Dovecot's and the SMTP server's processes run as other users than the test.
    for f in ["server.pem", "server.key"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
            .map_err(failed("chmod"))?;
    }
    std::fs::read_to_string(dir.join("ca.pem")).map_err(failed("reading ca.pem"))
}

/// A mail user: its address is its IMAP and SMTP login.
#[derive(Clone, Debug)]
pub struct MailUser {
    pub address: String,
    pub password: String,
}

/// Dovecot and the SMTP server, stopped when dropped.
pub struct MailServers {
    pub imap_port: u16,
    pub smtp_port: u16,
    /// With [`MailOptions::tls`]: the implicit-TLS ports and the CA (PEM) that signed the
    /// servers' certificate (for `localhost` and 127.0.0.1).
    pub imaps_port: Option<u16>,
    pub smtps_port: Option<u16>,
    pub ca_pem: Option<String>,
    pub users: Vec<MailUser>,
    dovecot: Child,
    dovecot_binary: PathBuf,
    smtp: Child,
    dir: tempfile::TempDir,
}

fn spawn_dovecot(binary: &Path, root: &Path) -> Result<Child, MailError> {
    Command::new(binary)
        .process_group(0)
        .arg("-F")
        .arg("-c")
        .arg(root.join("dovecot.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("dovecot.err")).map_err(failed("log"))?)
        .spawn()
        .map_err(failed("starting dovecot"))
}

fn free_port() -> Result<u16, MailError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| MailError::Failed(format!("no free loopback port: {e}")))
}

fn dovecot_binary() -> Option<PathBuf> {
    // Another Dovecot 2.3 build (or, pointed at nothing, how a test sees a machine without).
    if let Some(p) = std::env::var_os("ZOCALO_TEST_DOVECOT").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let std_path = PathBuf::from("/usr/sbin/dovecot");
    if std_path.exists() {
        return Some(std_path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("dovecot"))
            .find(|p| p.exists())
    })
}

/// Debian's python3, where `python3-aiosmtpd` is installed (another python3 earlier on PATH,
/// a pyenv one say, does not see Debian's packages).
fn python_with_aiosmtpd() -> Option<PathBuf> {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|py| {
            Command::new(py)
                .args(["-c", "import aiosmtpd.controller"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

fn id(flag: &str) -> Option<String> {
    let out = Command::new("id").arg(flag).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn write(path: &Path, text: &str) -> Result<(), MailError> {
    std::fs::write(path, text)
        .map_err(|e| MailError::Failed(format!("writing {}: {e}", path.display())))
}

fn failed(what: &str) -> impl Fn(std::io::Error) -> MailError + '_ {
    move |e| MailError::Failed(format!("{what}: {e}"))
}

/// Stops a server we started in a process group of its own: SIGTERM to the whole group
/// (Dovecot's master leaves its imap processes serving their open sessions, which a stop must
/// cut), then SIGKILL if it is still there after 3 s.
fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", child.id())])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl MailServers {
    /// Starts both servers with `users` (address, password); returns once both accept
    /// connections.
    pub async fn start(users: &[(&str, &str)]) -> Result<MailServers, MailError> {
        Self::start_with(users, MailOptions::default()).await
    }

    /// As [`MailServers::start`], with other [`MailOptions`].
    pub async fn start_with(
        users: &[(&str, &str)],
        options: MailOptions,
    ) -> Result<MailServers, MailError> {
        let MailOptions { no_idle, tls } = options;
        let idle = !no_idle;
        let dovecot = dovecot_binary()
            .ok_or_else(|| MailError::Missing("Dovecot (dovecot-imapd) is not installed".into()))?;
        let python = python_with_aiosmtpd().ok_or_else(|| {
            MailError::Missing("Python's aiosmtpd (python3-aiosmtpd) is not installed".into())
        })?;
        let dir = tempfile::Builder::new()
            .prefix("zocalo-mail")
            .tempdir()
            .map_err(failed("temp dir"))?;
        let root = dir.path().to_path_buf();
        // Dovecot's processes run as other users than the test: they must reach the files.
        let open = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .map_err(failed("chmod"))
        };
        open(&root)?;
        let me = std::fs::metadata(&root).map_err(failed("stat"))?;
        // Dovecot refuses root for its login processes and mail users: as root (CI, this
        // machine) use the package's users and `nobody` for the mail; else everything runs
        // as the current user.
        let (internal, internal_group, login, uid, gid) = if me.uid() == 0 {
            (
                "dovecot".to_owned(),
                "dovecot".to_owned(),
                "dovenull".to_owned(),
                65534,
                65534,
            )
        } else {
            let name = id("-un").ok_or_else(|| MailError::Failed("`id -un` failed".into()))?;
            let group = id("-gn").ok_or_else(|| MailError::Failed("`id -gn` failed".into()))?;
            (name.clone(), group, name, me.uid(), me.gid())
        };
        let home = root.join("home");
        std::fs::create_dir(&home).map_err(failed("mkdir home"))?;
        open(&home)?;
        let mut passwd = String::new();
        let mut smtp_users = serde_json::Map::new();
        let mut mail_users = Vec::new();
        for (address, password) in users {
            let user_home = home.join(address);
            std::fs::create_dir(&user_home).map_err(failed("mkdir user home"))?;
            if me.uid() == 0 {
                std::os::unix::fs::chown(&user_home, Some(uid), Some(gid))
                    .map_err(failed("chown user home"))?;
            }
            passwd.push_str(&format!("{address}:{{PLAIN}}{password}::::::\n"));
            smtp_users.insert(
                address.to_string(),
                serde_json::json!({
                    "password": password,
                    "maildir": user_home.join("Maildir"),
                }),
            );
            mail_users.push(MailUser {
                address: address.to_string(),
                password: password.to_string(),
            });
        }
        let passwd_path = root.join("passwd");
        write(&passwd_path, &passwd)?;
        let imap_port = free_port()?;
        let smtp_port = free_port()?;
        let (imaps_port, smtps_port, ca_pem) = if tls {
            let ca = make_certificates(&root)?;
            (Some(free_port()?), Some(free_port()?), Some(ca))
        } else {
            (None, None, None)
        };
        let ssl = match imaps_port {
            Some(port) => format!(
                "ssl = yes\nssl_cert = <{r}/server.pem\nssl_key = <{r}/server.key\n\
                 service imap-login {{\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {port}\n    ssl = yes\n  }}\n}}\n",
                r = root.display()
            ),
            None => "ssl = no\nservice imap-login {\n  inet_listener imaps {\n    port = 0\n  }\n}\n".into(),
        };
        let r = root.display();
        let conf = format!(
            "base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
listen = 127.0.0.1
protocols = imap
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
}}
service anvil {{
  chroot =
}}
"
        );
        let conf = conf + &ssl;
        let conf = if idle {
            conf
        } else {
            // Dovecot's own list after login, less IDLE.
            conf + "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+ NAMESPACE UIDPLUS\n"
        };
        let conf_path = root.join("dovecot.conf");
        write(&conf_path, &conf)?;
        let smtp_cfg = serde_json::json!({
            "port": smtp_port,
            "users": smtp_users,
            "uid": (me.uid() == 0).then_some(uid),
            "gid": (me.uid() == 0).then_some(gid),
            "tls_port": smtps_port,
            "cert": root.join("server.pem"),
            "key": root.join("server.key"),
        });
        let smtp_cfg_path = root.join("smtp.json");
        write(&smtp_cfg_path, &smtp_cfg.to_string())?;
        let script = root.join("smtp_server.py");
        write(&script, SMTP_SERVER)?;

        let dovecot_binary = dovecot;
        let dovecot = spawn_dovecot(&dovecot_binary, &root)?;
        let smtp = Command::new(python)
            .process_group(0)
            .arg(&script)
            .arg(&smtp_cfg_path)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("smtp.err")).map_err(failed("log"))?)
            .spawn();
        let smtp = match smtp {
            Ok(s) => s,
            Err(e) => {
                let mut d = dovecot;
                stop(&mut d);
                return Err(MailError::Failed(format!("starting the SMTP server: {e}")));
            }
        };
        let mut servers = MailServers {
            imap_port,
            smtp_port,
            imaps_port,
            smtps_port,
            ca_pem,
            users: mail_users,
            dovecot,
            dovecot_binary,
            smtp,
            dir,
        };
        servers.wait_ready().await?;
        Ok(servers)
    }

    async fn wait_ready(&mut self) -> Result<(), MailError> {
        let deadline = Instant::now() + Duration::from_secs(15);
        for (name, port) in [("dovecot", self.imap_port), ("smtp", self.smtp_port)] {
            loop {
                let child = if name == "dovecot" {
                    &mut self.dovecot
                } else {
                    &mut self.smtp
                };
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(MailError::Failed(format!(
                        "{name} exited ({status}) at start: {}",
                        self.logs()
                    )));
                }
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
                    // A greeting means the server is really serving.
                    let mut line = String::new();
                    let mut r = BufReader::new(&mut s);
                    if tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
                        .await
                        .is_ok_and(|n| n.is_ok_and(|n| n > 0))
                    {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    return Err(MailError::Failed(format!(
                        "{name} did not answer on 127.0.0.1:{port} within 15 s: {}",
                        self.logs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        Ok(())
    }

    /// Stops Dovecot and starts it again on the same port and mailboxes: every IMAP session
    /// open on it is cut, as a server restart or a dropped connection does.
    pub async fn restart_imap(&mut self) -> Result<(), MailError> {
        stop(&mut self.dovecot);
        self.dovecot = spawn_dovecot(&self.dovecot_binary, self.dir.path())?;
        self.wait_ready().await
    }

    /// `imaps://localhost:PORT`, with [`MailOptions::tls`].
    pub fn imaps_url(&self) -> Option<String> {
        self.imaps_port.map(|p| format!("imaps://localhost:{p}"))
    }

    /// `smtps://localhost:PORT`, with [`MailOptions::tls`].
    pub fn smtps_url(&self) -> Option<String> {
        self.smtps_port.map(|p| format!("smtps://localhost:{p}"))
    }

    /// Both servers' logs (for a failing test's message).
    pub fn logs(&self) -> String {
        ["dovecot.log", "dovecot.err", "smtp.err"]
            .iter()
            .map(|f| {
                format!(
                    "--- {f}\n{}",
                    std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `imap://127.0.0.1:PORT`
    /// Every message delivered to `address` so far, read from its Maildir (new and cur), in
    /// delivery order: what a test checks without an IMAP client of its own.
    pub fn delivered(&self, address: &str) -> Vec<String> {
        let root = self.dir.path().join("home").join(address).join("Maildir");
        let mut files: Vec<(std::time::SystemTime, String, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(root.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                files.push((
                    modified,
                    e.file_name().to_string_lossy().into_owned(),
                    e.path(),
                ));
            }
        }
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, _, p)| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    pub fn imap_url(&self) -> String {
        format!("imap://127.0.0.1:{}", self.imap_port)
    }

    /// `smtp+plain://127.0.0.1:PORT`
    pub fn smtp_url(&self) -> String {
        format!("smtp+plain://127.0.0.1:{}", self.smtp_port)
    }

    /// Hands `raw` (a whole RFC 5322 message) to the SMTP server for `to`, as `from`, without
    /// logging in: how mail from anyone arrives.
    pub async fn send_raw(&self, from: &str, to: &str, raw: &[u8]) -> Result<(), String> {
        let stream = TcpStream::connect(("127.0.0.1", self.smtp_port))
            .await
            .map_err(|e| format!("SMTP connect: {e}"))?;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        async fn answer(
            r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
            want: &str,
            what: &str,
        ) -> Result<(), String> {
            loop {
                let mut line = String::new();
                r.read_line(&mut line)
                    .await
                    .map_err(|e| format!("SMTP {what}: {e}"))?;
                if !line.starts_with(want) {
                    return Err(format!("SMTP {what}: {line:?}"));
                }
                // `250-` continues a multi-line answer; `250 ` ends it.
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(());
                }
            }
        }
        async fn say(w: &mut tokio::net::tcp::OwnedWriteHalf, s: String) -> Result<(), String> {
            w.write_all(s.as_bytes())
                .await
                .map_err(|e| format!("SMTP write: {e}"))
        }
        answer(&mut r, "220", "greeting").await?;
        say(&mut w, "EHLO test.local\r\n".into()).await?;
        answer(&mut r, "250", "EHLO").await?;
        say(&mut w, format!("MAIL FROM:<{from}>\r\n")).await?;
        answer(&mut r, "250", "MAIL FROM").await?;
        say(&mut w, format!("RCPT TO:<{to}>\r\n")).await?;
        answer(&mut r, "250", "RCPT TO").await?;
        say(&mut w, "DATA\r\n".into()).await?;
        answer(&mut r, "354", "DATA").await?;
        let text = String::from_utf8_lossy(raw);
        let mut data = String::with_capacity(raw.len() + 64);
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push_str(".\r\n");
        say(&mut w, data).await?;
        answer(&mut r, "250", "end of DATA").await?;
        say(&mut w, "QUIT\r\n".into()).await?;
        Ok(())
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        stop(&mut self.smtp);
        stop(&mut self.dovecot);
    }
}

/// The servers for `test`, or `None` (the test returns) when they are not installed and not
/// required; a failure to start when installed always fails the test.
pub async fn start_or_skip(test: &str, users: &[(&str, &str)]) -> Option<MailServers> {
    start_or_skip_with(test, users, MailOptions::default()).await
}

/// As [`start_or_skip`], with other [`MailOptions`].
pub async fn start_or_skip_with(
    test: &str,
    users: &[(&str, &str)],
    options: MailOptions,
) -> Option<MailServers> {
    match MailServers::start_with(users, options).await {
        Ok(s) => Some(s),
        Err(e @ MailError::Missing(_)) if !mail_required() => {
            eprintln!("skipping {test}: {e}");
            None
        }
        Err(e @ MailError::Missing(_)) => {
            panic!("{test}: {e} (ZOCALO_REQUIRE_MAIL=1 or CI is set, so this fails instead of skipping)")
        }
        Err(e) => panic!("{test}: the mail servers did not start: {e}"),
    }
}
