//! The benchmark baselines: a minimal axum server that parses a JSON body and echoes a small
//! JSON answer, so the intake benchmark can report casehub's throughput as a ratio of plain
//! axum's; and, with `--durable DIR`, the same echo that first stores each body durably the
//! cheapest way the embedded store could: one redb insert under a fresh UUID v4 key (as a case
//! id is), group-committed with an fsync by one writer thread, answered after the commit. The
//! second is the floor under any durable intake on this store: no validation, triage, actor,
//! index or outbox, only the write every acknowledged case needs. With `--redis URL` the same
//! for the Redis store: one `SET` of the body under a fresh UUID key on one multiplexed
//! connection (with the server's `appendfsync always`, acknowledged once it is on disk).
//!
//! Usage: echo-baseline [ADDR] [--durable DIR | --redis URL] (default 127.0.0.1:18081)

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use redb::{Database, Durability, TableDefinition};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

const BODIES: TableDefinition<u128, &[u8]> = TableDefinition::new("bodies");
/// Writes committed together at most, as the embedded store's writer.
const MAX_BATCH: usize = 512;

type Write = (u128, Vec<u8>, oneshot::Sender<bool>);

fn answer(body: &Value) -> Json<Value> {
    let fields = body.as_object().map(|o| o.len()).unwrap_or(0);
    Json(json!({"success": true, "fields": fields, "echo": body["customer_email"]}))
}

async fn echo(Json(body): Json<Value>) -> Json<Value> {
    answer(&body)
}

async fn durable_echo(
    State(writer): State<mpsc::Sender<Write>>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    let bytes = serde_json::to_vec(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let (done, committed) = oneshot::channel();
    let key = uuid::Uuid::new_v4().as_u128();
    let sent = writer.send((key, bytes, done)).await.is_ok();
    match sent && committed.await.unwrap_or(false) {
        true => Ok(answer(&body)),
        false => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

async fn redis_echo(
    State(redis): State<redis::aio::ConnectionManager>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    let bytes = serde_json::to_vec(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let key = format!("casehub-echo:{}", uuid::Uuid::new_v4());
    let mut conn = redis;
    redis::cmd("SET")
        .arg(key)
        .arg(bytes)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(answer(&body))
}

/// Commits whatever has queued up in one fsynced transaction, then answers each write.
fn write_loop(db: Database, mut rx: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let committed = (|| -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut table = txn.open_table(BODIES)?;
                for (key, bytes, _) in &batch {
                    table.insert(key, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })()
        .is_ok();
        for (_, _, done) in batch.drain(..) {
            let _ = done.send(committed);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:18081".to_string());
    let durable_dir = args
        .iter()
        .position(|a| a == "--durable")
        .and_then(|i| args.get(i + 1));
    let redis_url = args
        .iter()
        .position(|a| a == "--redis")
        .and_then(|i| args.get(i + 1));
    let app = match (durable_dir, redis_url) {
        (_, Some(url)) => {
            let client = redis::Client::open(url.as_str()).expect("a redis:// URL");
            let conn = redis::aio::ConnectionManager::new(client)
                .await
                .expect("connect to Redis");
            Router::new()
                .route("/webhook/support/intake", post(redis_echo))
                .with_state(conn)
        }
        (None, None) => Router::new().route("/webhook/support/intake", post(echo)),
        (Some(dir), None) => {
            std::fs::create_dir_all(dir).expect("create the durable echo's directory");
            let db = Database::builder()
                .set_cache_size(128 << 20)
                .create(std::path::Path::new(dir).join("echo.redb"))
                .expect("open the durable echo's redb file");
            let (tx, rx) = mpsc::channel(4096);
            std::thread::spawn(move || write_loop(db, rx));
            Router::new()
                .route("/webhook/support/intake", post(durable_echo))
                .with_state(tx)
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .expect("bind echo baseline");
    axum::serve(listener, app).await.expect("serve");
}
