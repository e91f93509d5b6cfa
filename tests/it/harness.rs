//! `spawn_app()` and request helpers shared by every test module.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use casehub::{Application, Settings};
use casehub_actors::clock::{SharedClock, SystemClock};
use casehub_actors::testing::RedisServer;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CLIENT_KEY: &str = "dev-client-key";
pub const ADMIN_KEY: &str = "dev-admin-key";

/// Where a test's state lives: a temporary embedded store, or a private `redis-server` with a
/// key prefix of its own. `CASEHUB_TEST_STORE=redis` selects Redis for the whole suite.
pub enum TestStore {
    Embedded(TempDir),
    Redis { server: RedisServer, prefix: String },
}

impl TestStore {
    /// A fresh store of the kind the suite runs against.
    pub fn new() -> TestStore {
        if std::env::var("CASEHUB_TEST_STORE").is_ok_and(|v| v == "redis") {
            let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
            TestStore::Redis {
                server: RedisServer::start(),
                prefix,
            }
        } else {
            TestStore::Embedded(TempDir::new().expect("temp dir"))
        }
    }

    /// A private `redis-server` with a fresh key prefix, whatever the suite runs against (for
    /// tests of several nodes sharing one store).
    pub fn private_redis() -> TestStore {
        TestStore::Redis {
            server: RedisServer::start(),
            prefix: format!("test-{}:", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Points `settings` at this store.
    pub fn apply(&self, settings: &mut Settings) {
        match self {
            TestStore::Embedded(dir) => settings.store.data_dir = dir.path().to_path_buf(),
            TestStore::Redis { server, prefix } => {
                settings.store.url = server.url();
                settings.store.key_prefix = prefix.clone();
            }
        }
    }

    /// The same, as environment variables for the binary.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            TestStore::Embedded(dir) => {
                vec![("CASEHUB__STORE__DATA_DIR", dir.path().display().to_string())]
            }
            TestStore::Redis { server, prefix } => vec![
                ("CASEHUB__STORE__URL", server.url()),
                ("CASEHUB__STORE__KEY_PREFIX", prefix.clone()),
            ],
        }
    }

    /// The Redis server behind this store, if any.
    pub fn redis(&mut self) -> Option<&mut RedisServer> {
        match self {
            TestStore::Redis { server, .. } => Some(server),
            TestStore::Embedded(_) => None,
        }
    }
}

/// A running server on its own port and store.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    _store: Option<TestStore>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// An answer: status, headers and JSON body (`Null` when empty or not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the contract's error envelope with `code` and `status`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["success"], json!(false), "body: {}", self.body);
        assert_eq!(
            self.body["error"]["code"],
            json!(code),
            "body: {}",
            self.body
        );
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(
            self.body["error"]["details"].is_object(),
            "body: {}",
            self.body
        );
        assert!(
            self.body["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }

    /// Asserts a 200 success.
    pub fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        assert_eq!(self.body["success"], json!(true), "body: {}", self.body);
        self.body
    }
}

/// Settings for a test: port 0, limits out of the way.
pub fn test_settings() -> Settings {
    let mut s = Settings::defaults();
    s.server.bind = "127.0.0.1:0".into();
    s.rate_limits.intake = 100_000;
    s.rate_limits.self_service = 100_000;
    s.rate_limits.approve = 100_000;
    s.rate_limits.feedback = 100_000;
    s.rate_limits.collaborative = 100_000;
    s.rate_limits.review = 100_000;
    // Links point at this host; tests follow their path and query.
    s.server.public_url = "http://casehub.test".into();
    s
}

/// Starts the server with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the server after `tweak` adjusts the settings.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(tweak, Arc::new(SystemClock)).await
}

/// Starts the server on an existing store (restarts).
pub async fn spawn_on(store: &TestStore, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_on_clock(store, tweak, Arc::new(SystemClock)).await
}

/// Starts the server with an injected clock.
pub async fn spawn_app_with_clock(
    tweak: impl FnOnce(&mut Settings),
    clock: SharedClock,
) -> TestApp {
    let store = TestStore::new();
    let mut app = spawn_on_clock(&store, tweak, clock).await;
    app._store = Some(store);
    app
}

async fn spawn_on_clock(
    store: &TestStore,
    tweak: impl FnOnce(&mut Settings),
    clock: SharedClock,
) -> TestApp {
    let mut settings = test_settings();
    store.apply(&mut settings);
    tweak(&mut settings);
    let app = Application::build_with_clock(settings, clock)
        .await
        .expect("build app");
    let port = app.port();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        _store: None,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    /// A handle on a server already running at `base` (another test's, or a process).
    pub fn attach(base: &str) -> TestApp {
        TestApp {
            base: base.to_string(),
            client: reqwest::Client::new(),
            _store: None,
            shutdown: None,
            handle: None,
        }
    }

    /// Sends a request with optional API key and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_reply(req.send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(CLIENT_KEY), Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Some(CLIENT_KEY), None).await
    }

    pub async fn get_anon(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None).await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Some(ADMIN_KEY), None).await
    }

    /// The Prometheus text of `/metrics`, as the admin reads it.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Creates a case and returns the intake response.
    pub async fn intake(&self, description: &str) -> Value {
        self.post("/webhook/support/intake", intake_body(description))
            .await
            .ok()
    }

    /// The status view of a case.
    pub async fn status(&self, case_id: &str) -> Value {
        self.get(&format!("/webhook/support/status/{case_id}"))
            .await
            .ok()["data"]
            .clone()
    }

    /// Every outbox event (admin listing).
    pub async fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .admin_get(&format!("/v1/events?limit=1000&after={after}"))
                .await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            let data = page.body["data"].as_array().cloned().unwrap_or_default();
            if data.is_empty() {
                return out;
            }
            after = page.body["next_cursor"].as_str().unwrap().to_string();
            out.extend(data);
        }
    }

    /// Event names recorded for one case, in order.
    pub async fn case_events(&self, case_id: &str) -> Vec<String> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e["data"]["case_id"] == json!(case_id))
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server exit");
        }
    }
}

async fn into_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// A valid intake body.
pub fn intake_body(description: &str) -> Value {
    json!({
        "customer_email": "john.doe@example.com",
        "customer_name": "John Doe",
        "description": description,
        "severity": "medium",
        "product": "web-portal",
        "environment": "production",
    })
}

/// Path and query of an absolute link the hub handed out.
pub fn path_of(link: &Value) -> String {
    let link = link.as_str().expect("link is a string");
    let rest = link
        .strip_prefix("http://casehub.test")
        .expect("link on public_url");
    rest.to_string()
}

/// Polls `check` until it returns `Some` or `deadline` passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The casehub binary running as a child process (for kill -9).
pub struct ServerProcess {
    pub base: String,
    child: Child,
}

impl ServerProcess {
    /// Starts the binary on a free port with `store`.
    pub async fn start(store: &TestStore) -> ServerProcess {
        Self::start_with(store, &[]).await
    }

    /// Starts the binary with extra `CASEHUB__…` environment settings.
    pub async fn start_with(store: &TestStore, env: &[(&str, &str)]) -> ServerProcess {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().unwrap().port()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_casehub"))
            .env("CASEHUB__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("CASEHUB__SERVER__PUBLIC_URL", "http://casehub.test")
            .envs(store.env())
            .env("CASEHUB__RATE_LIMITS__ENABLED", "false")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start casehub");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(20), || {
            let url = format!("{base}/api/health");
            let client = client.clone();
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
        ServerProcess { base, child }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        self.child.wait().expect("wait").code()
    }

    /// A test app handle talking to this process.
    pub fn client(&self) -> TestApp {
        TestApp::attach(&self.base)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
