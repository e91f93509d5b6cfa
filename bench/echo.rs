//! The benchmark baseline: a minimal axum server that parses a JSON body and echoes a small JSON
//! answer, so the intake benchmark can report casehub's throughput as a ratio of plain axum's.
//! Usage: echo-baseline [ADDR] (default 127.0.0.1:18081)

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

async fn echo(Json(body): Json<Value>) -> Json<Value> {
    let fields = body.as_object().map(|o| o.len()).unwrap_or(0);
    Json(json!({"success": true, "fields": fields, "echo": body["customer_email"]}))
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".to_string());
    let app = Router::new().route("/webhook/support/intake", post(echo));
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .expect("bind echo baseline");
    axum::serve(listener, app).await.expect("serve");
}
