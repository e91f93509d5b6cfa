//! Test support (feature `test-support`): a real `redis-server` on a free port in a temporary
//! directory, never the machine's shared instance, and a fault a test can plant in the delivery
//! pool.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Endpoint id → how many more attempts to it go before one panics.
static PANICS: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Mutex::default);

/// Makes the `nth` (1-based) delivery attempt to endpoint `endpoint_id` from now on panic in
/// its worker before it sends anything, as a bug would: tests see what the pool does when a
/// worker dies mid-run. Keyed by endpoint, so tests running side by side do not meet it.
pub fn panic_on_attempt(endpoint_id: &str, nth: usize) {
    let mut panics = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    panics.insert(endpoint_id.to_string(), nth.max(1));
}

/// Panics if a test planted a panic for this attempt to `endpoint_id` (see
/// [`panic_on_attempt`]).
pub(crate) fn planted_panic(endpoint_id: &str) {
    let fire = {
        let mut panics = PANICS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(left) = panics.get_mut(endpoint_id) else {
            return;
        };
        *left -= 1;
        *left == 0 && panics.remove(endpoint_id).is_some()
    };
    if fire {
        panic!("a panic planted by a test in a delivery attempt to {endpoint_id}");
    }
}

/// A private `redis-server` with AOF on and `appendfsync always`, stopped on drop.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RedisServer {
    /// Starts a server; panics with a clear message when `redis-server` is missing.
    pub fn start() -> RedisServer {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:{port}/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The data directory (AOF lives here).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no", "--logfile", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// Kills the server (SIGKILL); its AOF stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
