//! The email channel against real servers: Dovecot for IMAP and an aiosmtpd SMTP server that
//! delivers into the same Maildirs (zocalo_testkit::mail), on SQLite and PostgreSQL stores.
//! Without the servers these skip, unless ZOCALO_REQUIRE_MAIL=1 (`./x test`) or CI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use zocalo_channels::email::Email;
use zocalo_channels::inbox::MAX_TEXT;
use zocalo_channels::{ChannelError, Inbox, Transport};
use zocalo_core::config::EmailConfig;
use zocalo_core::Secret;
use zocalo_testkit::both_backends;
use zocalo_testkit::mail::{start_or_skip_with, MailOptions, MailServers};

const BOT: &str = "bot@example.org";
const BOT_PASSWORD: &str = "bot-secret";
const BOSS: &str = "boss@example.org";
const BOSS_PASSWORD: &str = "boss-secret";
const STRANGER: &str = "stranger@example.net";

async fn servers(test: &str) -> Option<MailServers> {
    servers_with(test, MailOptions::default()).await
}

async fn servers_with(test: &str, options: MailOptions) -> Option<MailServers> {
    start_or_skip_with(test, &[(BOT, BOT_PASSWORD), (BOSS, BOSS_PASSWORD)], options).await
}

fn config(s: &MailServers) -> EmailConfig {
    EmailConfig {
        imap: s.imap_url(),
        smtp: s.smtp_url(),
        user: BOT.into(),
        // Mixed case on purpose: the allowlist is case-insensitive.
        allow: vec!["Boss@Example.ORG".into()],
        poll_seconds: Some(1),
        ..EmailConfig::default()
    }
}

/// The bot's channel with a short IDLE, so a receive with nothing new returns quickly.
fn email(s: &MailServers, password: &str) -> Email {
    let mut e = Email::new(&config(s), Secret::new(password)).unwrap_or_else(|e| panic!("{e}"));
    e.idle = Duration::from_secs(2);
    e
}

fn mail(from: &str, subject: &str, id: &str, extra: &str, body: &str) -> String {
    format!(
        "From: Someone <{from}>\r\nTo: {BOT}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n{extra}MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
}

async fn send(s: &MailServers, from: &str, raw: &str) {
    s.send_raw(from, BOT, raw.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
}

/// Every message in `user`'s INBOX, read over IMAP, as text with unfolded headers.
async fn read_inbox(s: &MailServers, user: &str, password: &str) -> Vec<String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.imap_port))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut session = client
        .login(user, password)
        .await
        .unwrap_or_else(|(e, _)| panic!("{e}"));
    let mb = session
        .select("INBOX")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if mb.exists == 0 {
        return Vec::new();
    }
    let fetches: Vec<_> = session
        .fetch("1:*", "BODY.PEEK[]")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out: Vec<_> = fetches
        .iter()
        .map(|f| {
            (
                f.message,
                String::from_utf8_lossy(f.body().unwrap_or_default())
                    .replace("\r\n ", " ")
                    .replace("\r\n\t", " "),
            )
        })
        .collect();
    out.sort();
    let _ = session.logout().await;
    out.into_iter().map(|(_, m)| m).collect()
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    let head = mail.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Receives until `want` new messages were recorded (mail takes a moment to show), at most
/// 10 receives.
/// One receive, which must not fail: how many messages it recorded.
async fn receive(email: &Email, inbox: &Inbox) -> usize {
    email.receive(inbox).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn receive_until(email: &Email, inbox: &Inbox, want: usize) -> usize {
    let mut got = 0;
    for _ in 0..10 {
        got += receive(email, inbox).await;
        if got >= want {
            break;
        }
    }
    got
}

both_backends!(
    allowed_mail_is_recorded_once_and_strangers_never,
    |store| async move {
        let Some(s) = servers("allowed_mail_is_recorded_once").await else {
            return;
        };
        let inbox = Inbox::new(store);
        let email = email(&s, BOT_PASSWORD);
        // The first look only notes where the mailbox ends.
        assert_eq!(receive(&email, &inbox).await, 0);
        let start = inbox
            .cursor("email")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(start.resume_from.is_some_and(|p| p.ends_with(":0")));

        send(
            &s,
            STRANGER,
            &mail(STRANGER, "hi", "s1@example.net", "", "Buy my stuff"),
        )
        .await;
        send(
        &s,
        BOSS,
        &mail(
            "BOSS@example.ORG",
            "Plans for Friday",
            "b1@example.org",
            "",
            "What is on my calendar on Friday?\r\n\r\nOn Mon, Bot wrote:\r\n> earlier answer\r\n",
        ),
    )
    .await;
        assert_eq!(receive_until(&email, &inbox, 1).await, 1);
        let open = inbox
            .open("email", 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(open.len(), 1, "{open:?}");
        let m = &open[0];
        assert_eq!(m.sender, BOSS);
        assert_eq!(m.conv_key, "email:boss@example.org");
        assert_eq!(m.external_id, "<b1@example.org>");
        assert_eq!(m.text, "What is on my calendar on Friday?");
        assert_eq!(m.reply_to["subject"], "Plans for Friday");
        assert_eq!(m.reply_to["message_id"], "<b1@example.org>");
        assert_eq!(m.reply_to["from"], BOSS);

        // Nothing new: nothing recorded, the stranger's mail never.
        assert_eq!(receive(&email, &inbox).await, 0);
        assert_eq!(
            inbox
                .recent("email", 10)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .len(),
            1
        );
        assert_eq!(
            inbox
                .find("email", "<s1@example.net>")
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            None
        );
        // And the stranger got no answer (no backscatter): the bot sent nothing at all.
        assert!(read_inbox(&s, BOSS, BOSS_PASSWORD).await.is_empty());
        let pos = inbox
            .cursor("email")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            pos.resume_from.is_some_and(|p| p.ends_with(":2")),
            "both UIDs are passed"
        );
    }
);

both_backends!(idle_wakes_receive_when_mail_arrives, |store| async move {
    let Some(s) = servers("idle_wakes_receive").await else {
        return;
    };
    let inbox = Inbox::new(store);
    let mut email = email(&s, BOT_PASSWORD);
    email.idle = Duration::from_secs(20);
    let email = Arc::new(email);
    assert_eq!(receive(&email, &inbox).await, 0);
    let started = Instant::now();
    let waiting = {
        let (email, inbox) = (email.clone(), inbox.clone());
        tokio::spawn(async move { email.receive(&inbox).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    send(
        &s,
        BOSS,
        &mail(BOSS, "ping", "idle1@example.org", "", "are you there?"),
    )
    .await;
    let got = waiting
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "IDLE should wake up at once, took {:?}",
        started.elapsed()
    );
});

both_backends!(
    reply_is_threaded_and_read_back_over_imap,
    |store| async move {
        let Some(s) = servers("reply_is_threaded").await else {
            return;
        };
        let inbox = Inbox::new(store);
        let email = email(&s, BOT_PASSWORD);
        receive(&email, &inbox).await;
        send(
            &s,
            BOSS,
            &mail(
                BOSS,
                "Plans for Friday",
                "b2@example.org",
                "In-Reply-To: <root@example.org>\r\nReferences: <root@example.org>\r\n",
                "And Saturday?",
            ),
        )
        .await;
        assert_eq!(receive_until(&email, &inbox, 1).await, 1);
        let open = inbox
            .open("email", 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        email
            .reply(&open[0], "Friday: dentist at 10.\nSaturday: free.")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));

        let got = read_inbox(&s, BOSS, BOSS_PASSWORD).await;
        assert_eq!(got.len(), 1, "{got:?}");
        let r = &got[0];
        assert_eq!(header(r, "Subject"), Some("Re: Plans for Friday"), "{r}");
        assert_eq!(header(r, "In-Reply-To"), Some("<b2@example.org>"), "{r}");
        assert_eq!(
            header(r, "References"),
            Some("<root@example.org> <b2@example.org>"),
            "{r}"
        );
        assert_eq!(header(r, "From"), Some(BOT), "{r}");
        assert_eq!(header(r, "To"), Some(BOSS), "{r}");
        assert!(
            header(r, "Message-ID").is_some_and(|id| id.ends_with("@example.org>")),
            "{r}"
        );
        assert!(
            r.contains("Friday: dentist at 10.\r\nSaturday: free."),
            "{r}"
        );
    }
);

both_backends!(a_restart_does_not_take_old_mail_again, |store| async move {
    let Some(s) = servers("a_restart_does_not_take_old_mail_again").await else {
        return;
    };
    let inbox = Inbox::new(store);
    {
        let first = email(&s, BOT_PASSWORD);
        receive(&first, &inbox).await;
        send(&s, BOSS, &mail(BOSS, "one", "r1@example.org", "", "first")).await;
        send(&s, BOSS, &mail(BOSS, "two", "r2@example.org", "", "second")).await;
        assert_eq!(receive_until(&first, &inbox, 2).await, 2);
    }
    let again = email(&s, BOT_PASSWORD);
    assert_eq!(receive(&again, &inbox).await, 0);
    send(
        &s,
        BOSS,
        &mail(BOSS, "three", "r3@example.org", "", "third"),
    )
    .await;
    assert_eq!(receive_until(&again, &inbox, 1).await, 1);
    let texts: Vec<String> = inbox
        .recent("email", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["third", "second", "first"]);
});

both_backends!(
    a_changed_uidvalidity_starts_from_the_end,
    |store| async move {
        let Some(s) = servers("a_changed_uidvalidity").await else {
            return;
        };
        let inbox = Inbox::new(store);
        let email = email(&s, BOT_PASSWORD);
        send(
            &s,
            BOSS,
            &mail(BOSS, "old", "u1@example.org", "", "old mail"),
        )
        .await;
        // A position from a mailbox that was replaced since (another UIDVALIDITY).
        inbox
            .receive("email", &[], Some("1:0"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(receive(&email, &inbox).await, 0);
        let pos = inbox
            .cursor("email")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            pos.resume_from
                .as_deref()
                .is_some_and(|p| p != "1:0" && p.ends_with(":1")),
            "{pos:?}"
        );
        send(
            &s,
            BOSS,
            &mail(BOSS, "new", "u2@example.org", "", "new mail"),
        )
        .await;
        assert_eq!(receive_until(&email, &inbox, 1).await, 1);
        let recent = inbox
            .recent("email", 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].text, "new mail");
    }
);

both_backends!(
    malformed_and_huge_mail_never_breaks_receive,
    |store| async move {
        let Some(s) = servers("malformed_and_huge_mail").await else {
            return;
        };
        let inbox = Inbox::new(store);
        let email = email(&s, BOT_PASSWORD);
        receive(&email, &inbox).await;
        // No From header at all.
        send(&s, BOSS, "Subject: who am I\r\n\r\nno sender here\r\n").await;
        // A multipart whose boundary never comes, with garbage base64.
        send(
        &s,
        BOSS,
        &format!(
            "From: {BOSS}\r\nSubject: broken\r\nMessage-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"zz\"\r\n\r\n--zz\r\n\
             Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@not base64!!\r\n"
        ),
    )
    .await;
        // An HTML-only mail, and a huge one.
        send(
        &s,
        BOSS,
        &format!(
            "From: {BOSS}\r\nSubject: html\r\nMessage-ID: <m2@example.org>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hello <b>there</b></p></body></html>\r\n"
        ),
    )
    .await;
        // SMTP lines stop at 998 bytes: a big mail is many lines.
        let huge = "all work and no play makes jack a dull boy\r\n".repeat(10_000);
        send(&s, BOSS, &mail(BOSS, "huge", "m3@example.org", "", &huge)).await;
        let got = receive_until(&email, &inbox, 3).await;
        assert_eq!(
            got, 3,
            "the broken, HTML and huge mails; not the one without From"
        );
        let recent = inbox
            .recent("email", 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let by_id = |id: &str| {
            recent
                .iter()
                .find(|m| m.external_id == id)
                .unwrap_or_else(|| panic!("{id} not recorded: {recent:?}"))
        };
        assert!(by_id("<m2@example.org>").text.contains("Hello"));
        assert!(by_id("<m2@example.org>").text.contains("there"));
        assert!(!by_id("<m2@example.org>").text.contains("<b>"));
        let big = &by_id("<m3@example.org>").text;
        assert!(
            big.len() <= MAX_TEXT && big.len() > MAX_TEXT - 100,
            "{}",
            big.len()
        );
        assert!(big.starts_with("all work and no play makes jack a dull boy\nall work"));
        assert!(big.ends_with("[... cut: the mail was too long to read whole]"));
        // The broken one is recorded with what could be read (its subject at least).
        assert!(!by_id("<m1@example.org>").text.is_empty());
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_with_the_right_password_and_fails_clearly_with_a_wrong_one() {
    let Some(s) = servers("check").await else {
        return;
    };
    let ok = email(&s, BOT_PASSWORD)
        .check()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
    assert!(ok.contains(BOT) && ok.contains("IDLE"), "{ok}");
    let wrong = email(&s, "not-the-password");
    match wrong.check().await {
        Err(ChannelError::Unauthorized(why)) => {
            assert!(
                why.contains("refused the login") && why.contains("ZOCALO_EMAIL_PASSWORD"),
                "{why}"
            )
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // SMTP refuses the wrong password too, just as clearly.
    match wrong.notify(BOSS, "hello").await {
        Err(ChannelError::Unauthorized(why)) => assert!(why.contains("SMTP"), "{why}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(read_inbox(&s, BOSS, BOSS_PASSWORD).await.is_empty());
    // Nothing listens on a closed port: a transport error, worth retrying.
    drop(s);
    let err = wrong.check().await.err();
    assert!(
        err.as_ref().is_some_and(ChannelError::is_transient),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_sends_a_new_mail_with_the_first_line_as_subject() {
    let Some(s) = servers("notify").await else {
        return;
    };
    let email = email(&s, BOT_PASSWORD);
    email
        .notify(BOSS, "Backup done\nAll 3 disks are fine.")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
    let got = read_inbox(&s, BOSS, BOSS_PASSWORD).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(header(&got[0], "Subject"), Some("Backup done"));
    assert_eq!(header(&got[0], "In-Reply-To"), None);
    assert!(
        got[0].contains("Backup done\r\nAll 3 disks are fine."),
        "{}",
        got[0]
    );
    // A malformed target never reaches the server.
    assert!(matches!(
        email.notify("boss@example.org\r\nBcc: x@y.z", "x").await,
        Err(ChannelError::Invalid(_))
    ));
}

both_backends!(
    without_idle_receive_polls_every_poll_seconds,
    |store| async move {
        let options = MailOptions {
            no_idle: true,
            ..MailOptions::default()
        };
        let Some(s) = servers_with("without_idle_receive_polls", options).await else {
            return;
        };
        let inbox = Inbox::new(store);
        let mut email = email(&s, BOT_PASSWORD);
        // An IDLE would wait this long: returning after about poll_seconds shows it polled.
        email.idle = Duration::from_secs(60);
        let check = email.check().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(check.contains("polling"), "{check}");
        assert_eq!(receive(&email, &inbox).await, 0);
        let started = Instant::now();
        assert_eq!(receive(&email, &inbox).await, 0);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        send(
            &s,
            BOSS,
            &mail(BOSS, "poll", "p1@example.org", "", "polled"),
        )
        .await;
        assert_eq!(receive_until(&email, &inbox, 1).await, 1);
    }
);

both_backends!(
    a_lost_imap_session_is_replaced_without_an_error,
    |store| async move {
        let Some(mut s) = servers("a_lost_imap_session").await else {
            return;
        };
        let inbox = Inbox::new(store);
        let email = email(&s, BOT_PASSWORD);
        assert_eq!(receive(&email, &inbox).await, 0);
        // The session kept from that receive dies with the server.
        s.restart_imap().await.unwrap_or_else(|e| panic!("{e}"));
        send(
            &s,
            BOSS,
            &mail(BOSS, "after", "l1@example.org", "", "still there?"),
        )
        .await;
        assert_eq!(receive_until(&email, &inbox, 1).await, 1);
    }
);

both_backends!(
    imaps_and_smtps_work_with_the_servers_ca,
    |store| async move {
        let options = MailOptions {
            tls: true,
            ..MailOptions::default()
        };
        let Some(s) = servers_with("imaps_and_smtps", options).await else {
            return;
        };
        let cfg = EmailConfig {
            imap: s.imaps_url().unwrap_or_default(),
            smtp: s.smtps_url().unwrap_or_default(),
            ..config(&s)
        };
        let mut email =
            Email::new(&cfg, Secret::new(BOT_PASSWORD)).unwrap_or_else(|e| panic!("{e}"));
        email.idle = Duration::from_secs(2);
        // The servers' certificate is from a CA nobody trusts yet: refused, on both protocols.
        let refused = email.check().await.err();
        assert!(
            refused
                .as_ref()
                .is_some_and(|e| e.to_string().contains("TLS")),
            "{refused:?}"
        );
        let notified = email.notify(BOSS, "x").await.err();
        assert!(
            notified.is_some(),
            "SMTP over TLS to an untrusted certificate was accepted"
        );

        email
            .trust_pem(s.ca_pem.as_deref().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        let ok = email
            .check()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
        assert!(ok.contains("localhost"), "{ok}");
        let inbox = Inbox::new(store);
        receive(&email, &inbox).await;
        send(
            &s,
            BOSS,
            &mail(BOSS, "secure", "t1@example.org", "", "over TLS"),
        )
        .await;
        assert_eq!(receive_until(&email, &inbox, 1).await, 1);
        let open = inbox
            .open("email", 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        email
            .reply(&open[0], "answered over TLS")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
        let got = read_inbox(&s, BOSS, BOSS_PASSWORD).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("answered over TLS"));
    }
);
