//! `GET /console` (CONTRACT §6) in a real browser: Debian's headless Chromium driven over
//! WebDriver (`chromedriver`) with `fantoccini`, against the real server.
//!
//! The browser is required, not optional: when `/usr/bin/chromium` or `/usr/bin/chromedriver`
//! is missing these tests fail and say how to install them (`scripts/test.sh` does). Browser
//! tests run one at a time, each with its own `chromedriver` on a free port, which the test
//! stops (closing the session quits Chromium) whether it passed or not.
//! `CASEHUB_CONSOLE_SCREENSHOT=/path.png` saves a screenshot of the console mid-test.

use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{Value, json};

use crate::harness::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const REVIEWER: &str = "jane@company.com";
const ROOM: &str = "support-review";
/// How long the page may take to show what the server did.
const WAIT: Duration = Duration::from_secs(15);

const FEATURE: &str = "It would be great if the dashboard had a dark mode option and \
                       keyboard shortcuts; can you add this feature request?";

/// One browser at a time: two Chromiums beside the rest of the suite on a small machine make
/// timing-sensitive tests flaky.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `chromedriver` of our own and a WebDriver session on it.
struct Browser {
    driver: Child,
    client: Client,
}

impl Browser {
    /// Starts `chromedriver` on a free port and opens a headless Chromium session.
    async fn start() -> Browser {
        for (path, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "the console's browser test needs Debian's headless Chromium: {path} is missing \
                 (run scripts/test.sh, or `apt-get install -y chromium chromium-driver`; \
                 package {what})"
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("local addr").port()
        };
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so a failed test can stop the browser with the driver.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Ok(Some(status)) = driver.try_wait() {
                    return Err(format!("chromedriver exited at start: {status}"));
                }
                let ok = http
                    .get(format!("{url}/status"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if let Err(e) = ready.unwrap_or_else(|_| Err("not ready within 20 s".into())) {
            kill_group(&mut driver);
            panic!("chromedriver on port {port}: {e}");
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-dev-shm-usage",
                         "--no-first-run", "--window-size=1280,900"],
            },
        });
        let caps = caps.as_object().cloned().expect("capabilities object");
        let session = ClientBuilder::rustls()
            .expect("rustls connector")
            .capabilities(caps)
            .connect(&url)
            .await;
        match session {
            Ok(client) => Browser { driver, client },
            Err(e) => {
                kill_group(&mut driver);
                panic!("could not open a Chromium session through chromedriver: {e}");
            }
        }
    }

    /// Ends the session (which quits Chromium), then the driver.
    async fn quit(mut self) {
        let _ = self.client.clone().close().await;
        kill_group(&mut self.driver);
    }

    /// What the page says about itself, for failure messages.
    async fn describe(&self) -> String {
        let text = |css: &'static str| async move {
            match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        };
        format!(
            "status: {:?}; sign-in notice: {:?}; activity:\n{}",
            text("#status").await,
            text("#signin-error").await,
            text("#log").await
        )
    }

    /// Waits for `css` to match; fails with what the page shows.
    async fn wait_for(&self, css: &str, what: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(e) => e,
            Err(e) => panic!(
                "{what}: `{css}` not on the page within {WAIT:?} ({e})\n{}",
                self.describe().await
            ),
        }
    }

    /// Waits until nothing matches `css`.
    async fn wait_gone(&self, css: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self
                .client
                .find_all(Locator::Css(css))
                .await
                .expect("find_all");
            if found.is_empty() {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{what}: `{css}` still on the page after {WAIT:?}\n{}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks `css` once it is on the page and enabled.
    async fn click(&self, css: &str, what: &str) {
        let enabled = format!("{css}:not([disabled])");
        let button = self.wait_for(&enabled, what).await;
        button.click().await.expect(what);
    }

    /// Saves a screenshot when `CASEHUB_CONSOLE_SCREENSHOT` names a file.
    async fn screenshot_if_asked(&self) {
        if let Ok(path) = std::env::var("CASEHUB_CONSOLE_SCREENSHOT") {
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(&path, png).expect("write screenshot");
        }
    }
}

/// SIGKILL to the driver's own process group (the driver and the browsers it started), checked
/// to be the group it leads, so nothing else is ever signalled.
fn kill_group(driver: &mut Child) {
    let pid = driver.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state, ppid, pgrp.
    let pgrp = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(2))
        .and_then(|g| g.parse::<u32>().ok());
    if pgrp == Some(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }
    let _ = driver.kill();
    let _ = driver.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        if matches!(self.driver.try_wait(), Ok(None)) {
            kill_group(&mut self.driver);
        }
    }
}

/// Runs `body` with a fresh browser and always quits it, then re-raises a failure.
async fn with_browser(body: impl AsyncFnOnce(&Browser)) {
    let _one = ONE_BROWSER.lock().await;
    let browser = Browser::start().await;
    let outcome = AssertUnwindSafe(body(&browser)).catch_unwind().await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A reviewer token for `rooms`, as `casehub token` mints it.
fn reviewer_token(rooms: &[&str]) -> String {
    let auth = casehub::auth::Auth::new(&test_settings());
    let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
    auth.mint_reviewer(REVIEWER, &rooms, Duration::from_secs(3600))
}

/// Opens a collaborative review over HTTP; returns (case id, review id).
async fn collaborative_case(app: &TestApp) -> (String, String) {
    let created = app.intake(FEATURE).await;
    let case_id = created["case_id"].as_str().expect("case_id").to_string();
    let review = app
        .post(
            "/webhook/support/collaborative",
            json!({"case_id": case_id, "customer_id": created["customer_id"],
                   "urgency": "urgent", "specialist_request": "frontend",
                   "additional_context": "Enterprise plan"}),
        )
        .await
        .ok();
    assert_eq!(review["assigned_channel"], json!(format!("#{ROOM}")));
    let review_id = review["review_id"].as_str().expect("review_id").to_string();
    (case_id, review_id)
}

async fn wait_case_status(app: &TestApp, case_id: &str, want: &str) -> Value {
    eventually(WAIT, || async {
        let case = app.status(case_id).await;
        (case["status"] == json!(want)).then_some(case)
    })
    .await
}

fn card(review_id: &str) -> String {
    format!(".review[data-review-id=\"{review_id}\"]")
}

fn button(review_id: &str, action: &str) -> String {
    format!("{} button[data-action=\"{action}\"]", card(review_id))
}

#[tokio::test]
async fn a_reviewer_claims_and_approves_a_review_in_the_console() {
    let app = spawn_app().await;
    let token = reviewer_token(&[ROOM]);
    with_browser(async |b| {
        let c = &b.client;
        c.goto(&format!("{}/console", app.base))
            .await
            .expect("open /console");
        assert_eq!(
            c.title().await.expect("title"),
            "casehub · reviewer console"
        );

        // A token the server refuses (bad signature): the first connect fails and says so.
        let forged = format!("{}x", &token[..token.len() - 1]);
        b.wait_for("#token", "token field")
            .await
            .send_keys(&forged)
            .await
            .expect("type token");
        let room = c.find(Locator::Css("#room")).await.expect("room field");
        assert_eq!(
            room.prop("value").await.expect("room").as_deref(),
            Some(ROOM)
        );
        b.click("#connect", "connect").await;
        let status = b
            .wait_for("#status[data-state=\"closed\"]", "a refused token closes")
            .await;
        let said = status.text().await.expect("status text");
        assert!(said.contains("token refused"), "status: {said}");

        // The real token: live, and present in the room.
        let field = b.wait_for("#token", "token field").await;
        field.clear().await.expect("clear token");
        field.send_keys(&token).await.expect("type token");
        b.click("#connect", "connect").await;
        b.wait_for("#status[data-state=\"live\"]", "the console goes live")
            .await;
        b.wait_for(
            &format!("#presence li[data-reviewer=\"{REVIEWER}\"]"),
            "the reviewer is present",
        )
        .await;

        // A new review appears live, with what a reviewer triages on.
        let (case_id, review_id) = collaborative_case(&app).await;
        let shown = b.wait_for(&card(&review_id), "the new review's card").await;
        assert_eq!(
            shown.attr("data-case-id").await.expect("attr").as_deref(),
            Some(case_id.as_str())
        );
        assert_eq!(
            shown.attr("data-urgency").await.expect("attr").as_deref(),
            Some("urgent")
        );
        let text = shown.text().await.expect("card text");
        for part in ["John Doe", "frontend", "Unclaimed"] {
            assert!(text.contains(part), "card lacks {part:?}: {text}");
        }

        // Claim: the card says so, and Release replaces Claim.
        b.click(&button(&review_id, "claim"), "claim").await;
        b.wait_for(
            &format!("{}[data-claimed-by=\"{REVIEWER}\"]", card(&review_id)),
            "the review shows as claimed by the reviewer",
        )
        .await;
        b.wait_for(
            &format!("{}:not([hidden])", button(&review_id, "release")),
            "release offered",
        )
        .await;
        b.screenshot_if_asked().await;

        // Approve with a comment: the card leaves and the case resolves.
        let comment = format!("{} [data-field=\"comments\"]", card(&review_id));
        b.wait_for(&comment, "comment field")
            .await
            .send_keys("Looks good")
            .await
            .expect("type comment");
        b.click(&button(&review_id, "approve"), "approve").await;
        b.wait_gone(&card(&review_id), "the approved review leaves the list")
            .await;
        b.wait_for("#reviews[data-count=\"0\"]", "no pending review left")
            .await;
        let resolved = wait_case_status(&app, &case_id, "resolved").await;
        assert_eq!(resolved["review"]["reviewer"], json!(REVIEWER));
        assert_eq!(resolved["review"]["comments"], json!("Looks good"));
        assert_eq!(resolved["resolution_type"], json!("collaborative"));

        // The token is remembered across a reload, and forgotten on sign out.
        c.refresh().await.expect("reload");
        b.wait_for(
            "#status[data-state=\"live\"]",
            "live again from the remembered token",
        )
        .await;
        b.click("#signout", "sign out").await;
        b.wait_for("#status[data-state=\"idle\"]", "signed out")
            .await;
        let kept = c
            .execute(
                "return localStorage.getItem('casehub.console.token');",
                vec![],
            )
            .await
            .expect("read localStorage");
        assert_eq!(kept, Value::Null, "the token outlives sign out");
        c.refresh().await.expect("reload");
        let signin = b.wait_for("#signin", "the sign-in form").await;
        assert!(signin.is_displayed().await.expect("displayed"));
        b.wait_for("#status[data-state=\"idle\"]", "not connected")
            .await;
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_console_resumes_after_the_server_drops_the_socket() {
    let store = TestStore::new();
    let app = spawn_on(&store, |_| {}).await;
    let port: u16 = app
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in base url");
    let token = reviewer_token(&["*"]);
    let (kept_case, kept) = collaborative_case(&app).await;
    let (gone_case, gone) = collaborative_case(&app).await;

    with_browser(async move |b| {
        // The token carried in the URL: joined at once, and wiped from the address bar.
        b.client
            .goto(&format!("{}/console?token={token}&room={ROOM}", app.base))
            .await
            .expect("open /console");
        b.wait_for("#status[data-state=\"live\"]", "the console goes live")
            .await;
        let url = b.client.current_url().await.expect("url");
        assert_eq!(url.query(), None, "the token stays in the address bar");
        b.wait_for(&card(&kept), "a pending review").await;
        b.wait_for(&card(&gone), "another pending review").await;

        // The server goes away: the page notices and keeps trying.
        app.stop().await;
        b.wait_for(
            "#status[data-state=\"reconnecting\"]",
            "the page reconnects after the drop",
        )
        .await;

        // Back on the same port and store; meanwhile one review is decided and one is opened.
        let app = spawn_on(&store, |s| s.server.bind = format!("127.0.0.1:{port}")).await;
        app.get(&format!(
            "/webhook/support/review/{gone}/reject?reviewer={REVIEWER}&comments=Duplicate"
        ))
        .await
        .ok();
        let (new_case, new) = collaborative_case(&app).await;

        b.wait_for(
            "#status[data-state=\"live\"][data-resumed=\"true\"]",
            "the page resumes from its last event",
        )
        .await;
        b.wait_for(&card(&new), "the review opened while away")
            .await;
        b.wait_gone(&card(&gone), "the review decided while away leaves")
            .await;
        b.wait_for(&card(&kept), "the untouched review stays").await;

        // And it works as before: claim and approve the new one.
        b.click(&button(&new, "claim"), "claim").await;
        b.wait_for(
            &format!("{}[data-claimed-by=\"{REVIEWER}\"]", card(&new)),
            "claimed after the resume",
        )
        .await;
        b.click(&button(&new, "approve"), "approve").await;
        b.wait_gone(&card(&new), "the approved review leaves").await;
        wait_case_status(&app, &new_case, "resolved").await;
        wait_case_status(&app, &gone_case, "escalated").await;
        assert_eq!(
            app.status(&kept_case).await["status"],
            json!("pending_review")
        );
        app.stop().await;
    })
    .await;
}

/// A second reviewer on a plain WebSocket, to be seen by the page.
struct OtherReviewer {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl OtherReviewer {
    async fn join(app: &TestApp, who: &str) -> OtherReviewer {
        let auth = casehub::auth::Auth::new(&test_settings());
        let token = auth.mint_reviewer(who, &[ROOM.to_string()], Duration::from_secs(3600));
        let url = format!(
            "{}/ws/rooms/{ROOM}?token={token}",
            app.base.replacen("http", "ws", 1)
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("second reviewer joins");
        let mut other = OtherReviewer { ws };
        let welcome = other.next_frame().await;
        assert_eq!(welcome["type"], json!("welcome"), "{welcome}");
        other
    }

    async fn next_frame(&mut self) -> Value {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame");
            if let Message::Text(text) = msg {
                return serde_json::from_str(&text).expect("JSON frame");
            }
        }
    }

    /// Sends `frame` and waits for the answer to its `ref`.
    async fn request(&mut self, frame: Value) -> Value {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let reference = frame["ref"].clone();
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send frame");
        loop {
            let f = self.next_frame().await;
            if f["ref"] == reference && (f["type"] == json!("ack") || f["type"] == json!("error")) {
                return f;
            }
        }
    }

    async fn leave(mut self) {
        let _ = self.ws.close(None).await;
    }
}

#[tokio::test]
async fn the_console_shows_another_reviewers_claim_and_edits_with_a_reason() {
    let app = spawn_app().await;
    let token = reviewer_token(&[ROOM]);
    let (case_id, review_id) = collaborative_case(&app).await;
    with_browser(async |b| {
        b.client
            .goto(&format!("{}/console?token={token}", app.base))
            .await
            .expect("open /console");
        b.wait_for(&card(&review_id), "the pending review").await;

        // Bob joins and claims: the page shows him, and that the review is his.
        let bob = "bob@company.com";
        let mut other = OtherReviewer::join(&app, bob).await;
        b.wait_for(
            &format!("#presence li[data-reviewer=\"{bob}\"]"),
            "the other reviewer is present",
        )
        .await;
        let answer = other
            .request(json!({"type": "claim", "ref": "b1", "review_id": review_id}))
            .await;
        assert_eq!(answer["type"], json!("ack"), "{answer}");
        let claimed = b
            .wait_for(
                &format!("{}[data-claimed-by=\"{bob}\"]", card(&review_id)),
                "the other reviewer's claim",
            )
            .await;
        let text = claimed.text().await.expect("card text");
        assert!(text.contains(&format!("Claimed by {bob}")), "{text}");
        b.wait_for(
            &format!("{}[disabled]", button(&review_id, "approve")),
            "no approving a review someone else holds",
        )
        .await;

        // Bob leaves: he is gone, and so is his claim.
        other.leave().await;
        b.wait_gone(
            &format!("#presence li[data-reviewer=\"{bob}\"]"),
            "the other reviewer leaves",
        )
        .await;
        b.wait_for(
            &format!("{}[data-claimed-by=\"\"]", card(&review_id)),
            "the claim lapses when its holder disconnects",
        )
        .await;

        // Edit with a reason, from the inline form.
        b.click(&button(&review_id, "edit"), "open the edit form")
            .await;
        let field = |name: &str| format!("{} [data-field=\"{name}\"]", card(&review_id));
        b.wait_for(&field("edited_solution"), "edited solution field")
            .await
            .send_keys("Turn on dark mode under Settings > Appearance.")
            .await
            .expect("type solution");
        b.wait_for(&field("edit_reason"), "edit reason field")
            .await
            .send_keys("Pointed to the existing setting")
            .await
            .expect("type reason");
        b.click(&button(&review_id, "submit-edit"), "send the edit")
            .await;
        b.wait_gone(&card(&review_id), "the edited review leaves the list")
            .await;
        let resolved = wait_case_status(&app, &case_id, "resolved").await;
        assert_eq!(resolved["review"]["reviewer"], json!(REVIEWER));
        assert_eq!(
            resolved["review"]["edit_reason"],
            json!("Pointed to the existing setting")
        );
        assert_eq!(
            resolved["review"]["edited_solution"],
            json!("Turn on dark mode under Settings > Appearance.")
        );
    })
    .await;
    app.stop().await;
}
