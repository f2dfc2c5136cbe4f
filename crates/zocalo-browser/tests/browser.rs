//! The browser library against real headless Chromium and pages served on 127.0.0.1.
//!
//! One Chromium serves the whole file (each test opens its own tab in its own browser
//! context); it lives on a runtime kept in a static, and goes away with the test process
//! through its DevTools-pipe lifeline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use zocalo_browser::{
    find_chromium, parse_script, run_script, Browser, BrowserError, LaunchOptions, Tab, Target,
    TypeOptions, WaitCondition, WaitState,
};
use zocalo_testkit::pages::{skip_or_fail, PageServer, Route};

/// Generous: these tests are about behaviour, and CI machines are busy. Timeouts themselves
/// are tested with short explicit ones.
const T: Duration = Duration::from_secs(20);
const WIDTH: u32 = 1024;
const HEIGHT: u32 = 640;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The file's shared browser, or `None` (test skipped) when Chromium is missing.
fn browser(test: &str) -> Option<&'static Browser> {
    static BROWSER: OnceLock<Option<Browser>> = OnceLock::new();
    let b = BROWSER.get_or_init(|| {
        find_chromium().ok()?;
        let opts = LaunchOptions {
            width: WIDTH,
            height: HEIGHT,
            ..LaunchOptions::default()
        };
        Some(
            rt().block_on(Browser::launch(&opts))
                .unwrap_or_else(|e| panic!("Chromium is installed but does not start: {e}")),
        )
    });
    if b.is_none() {
        let reason = find_chromium()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        skip_or_fail(test, &reason);
    }
    b.as_ref()
}

/// Run `body` with a fresh tab and page server.
fn with_tab<F>(test: &str, body: impl FnOnce(Tab, PageServer) -> F)
where
    F: std::future::Future<Output = ()>,
{
    let Some(b) = browser(test) else { return };
    rt().block_on(async {
        let server = PageServer::start().await;
        let tab = b.new_tab().await.unwrap();
        body(tab, server).await;
    });
}

const FORM: &str = r#"<!doctype html><html><head><title>Sign up</title></head><body>
<nav><a href="/">Home</a></nav>
<main>
  <form action="/echo" method="get">
    <label for="name">Name</label><input id="name" name="name" value="old">
    <label for="email">Email</label><input id="email" name="email" type="email">
    <label><input id="agree" name="agree" type="checkbox" value="yes"> I agree</label>
    <label for="note">Note</label><textarea id="note" name="note"></textarea>
    <button id="send" type="submit">Send</button>
  </form>
</main></body></html>"#;

#[test]
fn forms_fill_by_selector_and_ref_and_submit() {
    with_tab(
        "forms_fill_by_selector_and_ref_and_submit",
        |mut tab, server| async move {
            server.page("/form", FORM);
            let nav = tab.goto(&server.url("/form"), T).await.unwrap();
            assert_eq!(nav.title, "Sign up");
            assert_eq!(nav.status, Some(200));

            // By selector: replaces the pre-filled value.
            tab.type_text(
                &Target::Css("#name".into()),
                "Ada Lovelace",
                TypeOptions::default(),
                T,
            )
            .await
            .unwrap();
            // By ref, found through the snapshot by its label.
            let snap = tab.snapshot().await.unwrap();
            let find = |role: &str, name: &str| {
                snap.elements
                    .iter()
                    .find(|e| e.role == role && e.name == name)
                    .unwrap_or_else(|| panic!("no {role} {name:?} in {snap:#?}"))
                    .reference
                    .clone()
            };
            let email = find("textbox", "Email");
            let agree = find("checkbox", "I agree");
            tab.type_text(
                &Target::Ref(email),
                "ada@example.com",
                TypeOptions::default(),
                T,
            )
            .await
            .unwrap();
            tab.click(&Target::Ref(agree.clone()), T).await.unwrap();
            // Appending keeps what is there.
            tab.type_text(
                &Target::Css("#note".into()),
                "one",
                TypeOptions::default(),
                T,
            )
            .await
            .unwrap();
            tab.type_text(
                &Target::Css("#note".into()),
                " two",
                TypeOptions {
                    append: true,
                    submit: false,
                },
                T,
            )
            .await
            .unwrap();
            assert_eq!(
                tab.eval("document.querySelector('#agree').checked", T)
                    .await
                    .unwrap(),
                json!(true)
            );
            let snap = tab.snapshot().await.unwrap();
            let agree_el = snap.elements.iter().find(|e| e.reference == agree).unwrap();
            assert_eq!(agree_el.checked.as_deref(), Some("true"));
            let name_el = snap.elements.iter().find(|e| e.name == "Name").unwrap();
            assert_eq!(name_el.value.as_deref(), Some("Ada Lovelace"));

            tab.click(&Target::Css("#send".into()), T).await.unwrap();
            tab.wait_for(
                &WaitCondition::Element {
                    target: Target::Css("#echo".into()),
                    state: WaitState::Visible,
                },
                T,
            )
            .await
            .unwrap();
            let echoed = tab
                .eval("document.querySelector('#echo').textContent", T)
                .await
                .unwrap();
            assert_eq!(
                echoed,
                json!("name=Ada+Lovelace&email=ada%40example.com&agree=yes&note=one+two")
            );
            assert!(tab.url().await.unwrap().starts_with(&server.url("/echo?")));
        },
    );
}

#[test]
fn enter_submits_a_form() {
    with_tab("enter_submits_a_form", |mut tab, server| async move {
        server.page("/form", FORM);
        tab.goto(&server.url("/form"), T).await.unwrap();
        tab.type_text(
            &Target::Css("#name".into()),
            "Grace",
            TypeOptions {
                append: false,
                submit: true,
            },
            T,
        )
        .await
        .unwrap();
        tab.wait_for(&WaitCondition::Text("name=Grace".into()), T)
            .await
            .unwrap();
        assert_eq!(tab.title().await.unwrap(), "Echo");
    });
}

const COUNTER: &str = r#"<!doctype html><title>Counter</title>
<main><button id="inc" onclick="document.getElementById('n').textContent = +document.getElementById('n').textContent + 1">Add one</button>
<output id="n">0</output>
<div style="height: 3000px"></div>
<button id="far" onclick="this.textContent = 'Far clicked'">Far away</button></main>"#;

#[test]
fn clicks_by_selector_and_by_ref_scrolling_when_needed() {
    with_tab(
        "clicks_by_selector_and_by_ref_scrolling_when_needed",
        |mut tab, server| async move {
            server.page("/", COUNTER);
            tab.goto(&server.url("/"), T).await.unwrap();
            tab.click(&Target::Css("#inc".into()), T).await.unwrap();
            let snap = tab.snapshot().await.unwrap();
            let add = snap
                .elements
                .iter()
                .find(|e| e.name == "Add one")
                .unwrap()
                .reference
                .clone();
            tab.click(&Target::Ref(add), T).await.unwrap();
            assert_eq!(
                tab.eval("document.getElementById('n').textContent", T)
                    .await
                    .unwrap(),
                json!("2")
            );
            // Below the fold: scrolled into view, then clicked with the mouse.
            let far = snap
                .elements
                .iter()
                .find(|e| e.name == "Far away")
                .unwrap()
                .reference
                .clone();
            tab.click(&Target::Ref(far), T).await.unwrap();
            assert_eq!(
                tab.eval("document.getElementById('far').textContent", T)
                    .await
                    .unwrap(),
                json!("Far clicked")
            );
        },
    );
}

// The content appears 800 ms after the test calls `start()`: the test, not page-load timing,
// decides when the clock starts.
const DELAYED: &str = r#"<!doctype html><title>Later</title><body>
<div id="spinner">Loading…</div>
<script>
window.start = () => setTimeout(() => {
  const b = document.createElement('button');
  b.id = 'late'; b.textContent = 'Appeared';
  b.onclick = () => { b.textContent = 'Clicked late'; };
  document.body.appendChild(b);
  document.getElementById('spinner').remove();
}, 800);
</script></body>"#;

#[test]
fn waits_for_content_that_appears_later() {
    with_tab(
        "waits_for_content_that_appears_later",
        |mut tab, server| async move {
            server.page("/", DELAYED);
            tab.goto(&server.url("/"), T).await.unwrap();
            tab.eval("start(), true", T).await.unwrap();
            let late = || WaitCondition::Element {
                target: Target::Css("#late".into()),
                state: WaitState::Visible,
            };
            // Not there yet: a short wait fails and says what it waited for.
            let e = tab
                .wait_for(&late(), Duration::from_millis(50))
                .await
                .unwrap_err();
            assert!(matches!(e, BrowserError::Timeout { .. }), "{e}");
            assert_eq!(
                e.to_string(),
                "no visible element matches \"#late\" (waited 50 ms)"
            );
            let waited = tab.wait_for(&late(), T).await.unwrap();
            assert!(waited >= Duration::from_millis(300), "{waited:?}");
            tab.wait_for(
                &WaitCondition::Element {
                    target: Target::Css("#spinner".into()),
                    state: WaitState::Hidden,
                },
                T,
            )
            .await
            .unwrap();
            tab.wait_for(&WaitCondition::Text("Appeared".into()), T)
                .await
                .unwrap();
            // A click on a selector also waits for its element.
            tab.goto(&server.url("/"), T).await.unwrap();
            tab.eval("start(), true", T).await.unwrap();
            tab.click(&Target::Css("#late".into()), T).await.unwrap();
            assert_eq!(
                tab.eval("document.getElementById('late').textContent", T)
                    .await
                    .unwrap(),
                json!("Clicked late")
            );
        },
    );
}

#[test]
fn navigation_by_goto_and_by_link() {
    with_tab(
        "navigation_by_goto_and_by_link",
        |mut tab, server| async move {
            server.page(
                "/",
                r#"<!doctype html><title>First</title><a id="go" href="/second">Second page</a>"#,
            );
            server.page(
                "/second",
                r#"<!doctype html><title>Second</title><h1>Welcome</h1>"#,
            );
            let first = tab.goto(&server.url("/"), T).await.unwrap();
            assert_eq!(first.title, "First");
            let snap = tab.snapshot().await.unwrap();
            assert_eq!(snap.elements.len(), 1);
            assert_eq!(
                (
                    snap.elements[0].role.as_str(),
                    snap.elements[0].name.as_str()
                ),
                ("link", "Second page")
            );
            tab.click(&Target::Ref(snap.elements[0].reference.clone()), T)
                .await
                .unwrap();
            tab.wait_for(&WaitCondition::Text("Welcome".into()), T)
                .await
                .unwrap();
            assert_eq!(tab.title().await.unwrap(), "Second");
            assert_eq!(tab.url().await.unwrap(), server.url("/second"));
            // A 404 still loads; the status says what happened.
            let missing = tab.goto(&server.url("/nope"), T).await.unwrap();
            assert_eq!(missing.status, Some(404));
            // Refs die with their page.
            let e = tab.click(&Target::Ref("e1".into()), T).await.unwrap_err();
            assert!(matches!(e, BrowserError::UnknownRef(_)), "{e}");
        },
    );
}

#[test]
fn screenshots_are_pngs_of_the_viewport_and_the_page() {
    with_tab(
        "screenshots_are_pngs_of_the_viewport_and_the_page",
        |mut tab, server| async move {
            server.page(
            "/",
            r#"<!doctype html><title>Red</title><style>html,body{margin:0;background:rgb(255,0,0)}</style><div style="height:2000px"></div>"#,
        );
            tab.goto(&server.url("/"), T).await.unwrap();
            let png = tab.screenshot(false).await.unwrap();
            let (w, h, px) = decode(&png);
            assert_eq!((w, h), (WIDTH, HEIGHT));
            assert_eq!(px, [255, 0, 0], "the page's background colour at (10, 10)");
            let full = tab.screenshot(true).await.unwrap();
            let (fw, fh, _) = decode(&full);
            assert_eq!(fw, WIDTH);
            assert_eq!(fh, 2000, "the full page is as tall as its content");
        },
    );
}

/// Width, height and the RGB of pixel (10, 10), by really decoding the PNG.
fn decode(png: &[u8]) -> (u32, u32, [u8; 3]) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a valid PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let channels = info.color_type.samples();
    let i = (10 * info.width as usize + 10) * channels;
    (info.width, info.height, [buf[i], buf[i + 1], buf[i + 2]])
}

const LANDMARKS: &str = r#"<!doctype html><title>Shop</title>
<header><a href="/">Logo</a></header>
<nav aria-label="Main"><a href="/a">Alpha</a> <a href="/b">Beta</a></nav>
<main>
  <h1>Welcome</h1>
  <p>Plain text is not listed.</p>
  <div>Neither is <span>this</span>.</div>
  <form aria-label="Search"><input type="search" aria-label="Query"><button>Go</button></form>
  <select aria-label="Size"><option>S</option><option selected>M</option></select>
  <button disabled>Sold out</button>
  <div style="display:none"><button>Hidden</button></div>
</main>
<footer><a href="/legal">Legal</a></footer>"#;

#[test]
fn snapshots_list_interactive_and_landmark_elements_in_document_order() {
    with_tab(
        "snapshots_list_interactive_and_landmark_elements_in_document_order",
        |mut tab, server| async move {
            server.page("/", LANDMARKS);
            tab.goto(&server.url("/"), T).await.unwrap();
            let snap = tab.snapshot().await.unwrap();
            let got: Vec<(String, String, String)> = snap
                .elements
                .iter()
                .map(|e| (e.reference.clone(), e.role.clone(), e.name.clone()))
                .collect();
            let want: Vec<(String, String, String)> = [
                ("banner", ""),
                ("link", "Logo"),
                ("navigation", "Main"),
                ("link", "Alpha"),
                ("link", "Beta"),
                ("main", ""),
                ("form", "Search"),
                ("searchbox", "Query"),
                ("button", "Go"),
                ("combobox", "Size"),
                ("button", "Sold out"),
                ("contentinfo", ""),
                ("link", "Legal"),
            ]
            .iter()
            .enumerate()
            .map(|(i, (r, n))| (format!("e{}", i + 1), r.to_string(), n.to_string()))
            .collect();
            assert_eq!(got, want, "{}", snap.render());
            assert!(snap.elements[10].disabled);
            assert_eq!(snap.elements[9].value.as_deref(), Some("M"));
            // The same page in another tab, another context: the same snapshot.
            let again = {
                let b = browser("snapshot determinism").unwrap();
                let mut other = b.new_tab().await.unwrap();
                other.goto(&server.url("/"), T).await.unwrap();
                let s = other.snapshot().await.unwrap();
                b.close_tab(other).await;
                s
            };
            assert_eq!(again, snap);
        },
    );
}

#[test]
fn step_failures_are_clean_errors() {
    with_tab(
        "step_failures_are_clean_errors",
        |mut tab, server| async move {
            server.page("/", r#"<!doctype html><title>Errors</title><button id="b">B</button><p id="gone">Gone soon</p>"#);
            server.route("/reset", Route::Reset);
            server.route("/stall", Route::Stall);

            // Unreachable: a port nobody listens on.
            let closed = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let e = tab
                .goto(&format!("http://127.0.0.1:{closed}/"), T)
                .await
                .unwrap_err();
            assert!(matches!(e, BrowserError::Unreachable { .. }), "{e:?}");
            assert!(e.to_string().contains("ERR_CONNECTION_REFUSED"), "{e}");

            // The server answers nothing at all.
            let e = tab.goto(&server.url("/reset"), T).await.unwrap_err();
            assert!(matches!(e, BrowserError::Navigation { .. }), "{e:?}");
            assert!(e.to_string().contains("ERR_EMPTY_RESPONSE"), "{e}");

            // The server never answers.
            let e = tab
                .goto(&server.url("/stall"), Duration::from_millis(700))
                .await
                .unwrap_err();
            assert!(matches!(e, BrowserError::Timeout { .. }), "{e:?}");
            assert!(e.to_string().contains("did not finish loading"), "{e}");

            tab.goto(&server.url("/"), T).await.unwrap();
            let e = tab
                .click(&Target::Css("#missing".into()), Duration::from_millis(300))
                .await
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                "no element matches \"#missing\" (waited 300 ms)"
            );
            let e = tab.click(&Target::Css("#b[".into()), T).await.unwrap_err();
            assert!(matches!(e, BrowserError::InvalidSelector { .. }), "{e:?}");

            let e = tab
                .eval("(() => { throw new Error('boom') })()", T)
                .await
                .unwrap_err();
            assert_eq!(e.to_string(), "JavaScript exception: Error: boom");
            let e = tab
                .eval("Promise.reject(new TypeError('nope'))", T)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("TypeError: nope"), "{e}");
            let e = tab
                .eval("new Promise(() => {})", Duration::from_millis(200))
                .await
                .unwrap_err();
            assert!(matches!(e, BrowserError::Timeout { .. }), "{e:?}");
            // Values JSON cannot hold come back as text.
            assert_eq!(tab.eval("0/0", T).await.unwrap(), json!("NaN"));
            assert_eq!(tab.eval("undefined", T).await.unwrap(), json!(null));

            let e = tab.click(&Target::Ref("e1".into()), T).await.unwrap_err();
            assert!(matches!(e, BrowserError::UnknownRef(_)), "{e:?}");
            let snap = tab.snapshot().await.unwrap();
            let b = snap.elements[0].reference.clone();
            tab.eval("document.getElementById('b').remove()", T)
                .await
                .unwrap();
            let e = tab.click(&Target::Ref(b), T).await.unwrap_err();
            assert!(matches!(e, BrowserError::StaleRef(_)), "{e:?}");
            // Not focusable.
            let e = tab
                .type_text(&Target::Css("#gone".into()), "x", TypeOptions::default(), T)
                .await
                .unwrap_err();
            assert!(matches!(e, BrowserError::NotInteractable { .. }), "{e:?}");
        },
    );
}

#[test]
fn scripts_run_in_order_and_stop_at_the_first_failure() {
    with_tab(
        "scripts_run_in_order_and_stop_at_the_first_failure",
        |mut tab, server| async move {
            server.page("/", COUNTER);
            let dir = tempfile::tempdir().unwrap();
            let script = parse_script(
                &json!({"timeout_ms": 20000, "steps": [
                    {"goto": server.url("/")},
                    {"snapshot": true},
                    {"click": {"ref": "e2"}},
                    {"eval": "document.getElementById('n').textContent"},
                    {"screenshot": "shot.png"},
                    {"click": "#nothing-here", "timeout_ms": 200},
                    {"eval": "'never runs'"}
                ]})
                .to_string(),
            )
            .unwrap();
            let mut seen = Vec::new();
            let report = run_script(&mut tab, &script, dir.path(), |s| seen.push(s.step)).await;
            assert!(!report.ok);
            assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
            assert_eq!(report.steps.len(), 6);
            assert_eq!(
                report.steps[1].value.as_ref().unwrap()["elements"][1]["name"],
                "Add one"
            );
            assert_eq!(report.steps[3].value, Some(json!("1")));
            assert_eq!(report.steps[4].value.as_ref().unwrap()["width"], WIDTH);
            assert!(dir.path().join("shot.png").exists());
            let failed = &report.steps[5];
            assert!(!failed.ok);
            assert_eq!(
            failed.error.as_deref(),
            Some("step 5 (click \"#nothing-here\"): no element matches \"#nothing-here\" (waited 200 ms)")
        );
            assert_eq!(report.title, "Counter");
        },
    );
}

/// A browser of its own: dropping it leaves no process of its group, and a binary that does
/// not start is a clean launch error.
#[test]
fn dropping_a_browser_kills_all_of_chromium() {
    if browser("dropping_a_browser_kills_all_of_chromium").is_none() {
        return;
    }
    rt().block_on(async {
        let b = Browser::launch(&LaunchOptions::default()).await.unwrap();
        let pid = b.pid();
        let tab = b.new_tab().await.unwrap();
        drop(tab);
        assert!(!group_members(pid).is_empty());
        drop(b);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !group_members(pid).is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            group_members(pid),
            Vec::<u32>::new(),
            "processes left in group {pid}"
        );

        let e = Browser::launch(&LaunchOptions {
            executable: Some("/bin/false".into()),
            ..LaunchOptions::default()
        })
        .await
        .err()
        .unwrap();
        assert!(matches!(e, BrowserError::Launch(_)), "{e:?}");
        assert!(e.to_string().contains("gave no DevTools endpoint"), "{e}");
    });
}

/// Live (non-zombie) processes whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state ppid pgrp ...
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            out.push(pid);
        }
    }
    out
}
