//! `GET /openapi.json` (CONTRACT §7): a valid OpenAPI 3 document that matches the router.
//!
//! Three ways it could drift, three checks: an operation documented but not served (every
//! documented path and method is requested and must not reach the router's fallback), a contract
//! route served but not documented (a hand-written list of them must be in the document), and a
//! wire shape documented wrong (real answers from a whole case lifecycle are validated against
//! their documented schemas). The document itself is validated with `openapi-spec-validator`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::*;

/// Every route of `routes::router` as served today (CONTRACT §3, §7), in OpenAPI path form.
const CONTRACT_ROUTES: &[(&str, &str)] = &[
    ("post", "/webhook/support/intake"),
    ("post", "/webhook/support/intake/{key}"),
    ("post", "/webhook/support/self-service"),
    ("get", "/webhook/support/approve/{case_id}"),
    ("get", "/webhook/support/feedback/{case_id}"),
    ("post", "/webhook/support/collaborative"),
    ("get", "/webhook/support/review/{review_id}/{action}"),
    ("post", "/webhook/support/review/{review_id}/edit"),
    ("get", "/webhook/support/status/{case_id}"),
    ("post", "/api/webhooks/receive"),
    ("post", "/api/widget/contact"),
    ("get", "/v1/cases"),
    ("get", "/v1/events"),
    ("get", "/v1/webhooks/endpoints"),
    ("post", "/v1/webhooks/endpoints"),
    ("get", "/v1/webhooks/endpoints/{id}"),
    ("patch", "/v1/webhooks/endpoints/{id}"),
    ("delete", "/v1/webhooks/endpoints/{id}"),
    ("post", "/v1/webhooks/endpoints/{id}/rotate-secret"),
    ("get", "/v1/webhooks/endpoints/{id}/deliveries"),
    ("post", "/v1/webhooks/endpoints/{id}/test"),
    ("post", "/v1/webhooks/deliveries/{msg_id}/retry"),
    ("get", "/api/health"),
    ("head", "/api/health"),
    ("get", "/ops/actors"),
    ("get", "/ops/stream"),
    ("get", "/metrics"),
    ("post", "/ops/faults/cases/{case_id}/panic"),
    ("get", "/openapi.json"),
    ("get", "/console"),
    ("get", "/ws/rooms/{room}"),
    ("get", "/ops/rooms"),
];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

const SSL: &str = "Our SSL certificate expired yesterday and browsers now show a certificate \
                   error on our custom domain. How do we renew it?";
const FEATURE: &str = "It would be great if the dashboard had a dark mode option and \
                       keyboard shortcuts; can you add this feature request?";

/// The served document.
async fn document(app: &TestApp) -> Value {
    let reply = app.get_anon("/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK, "body: {}", reply.body);
    assert!(reply.body.is_object(), "/openapi.json is not a JSON object");
    reply.body
}

/// Every (method, path) the document describes.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let paths = doc["paths"].as_object().expect("document has paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in HTTP_METHODS {
            if item.get(*method).is_some() {
                out.push((method.to_string(), path.clone()));
            }
        }
    }
    out
}

/// `path` with each `{param}` replaced by a plausible value.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed path parameter") + start;
        let value = match &rest[start + 1..end] {
            "case_id" => uuid::Uuid::new_v4().to_string(),
            "review_id" => "rev-000000000000".to_string(),
            "action" => "approve".to_string(),
            "key" => CLIENT_KEY.to_string(),
            "id" => "wh_01JAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
            "msg_id" => "msg_01JAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
            "room" => "support-review".to_string(),
            other => panic!("no sample value for path parameter `{other}` in {path}; add one"),
        };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Fails unless `python3` can import `module`, saying how to install it.
fn require_python_module(module: &str, package: &str) {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 cannot import `{module}`, which validates the OpenAPI document: \
         run `pip install {package}`"
    );
}

#[tokio::test]
async fn document_is_valid_openapi_3() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi: {:?}", doc["openapi"]);

    // Every security requirement names a declared scheme (the validator does not check this).
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        for requirement in op["security"].as_array().into_iter().flatten() {
            for name in requirement.as_object().expect("requirement").keys() {
                assert!(
                    schemes.contains_key(name),
                    "{method} {path}: unknown security scheme {name}"
                );
            }
        }
    }

    require_python_module("openapi_spec_validator", "openapi-spec-validator");
    let mut file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file");
    file.write_all(doc.to_string().as_bytes())
        .expect("write document");
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(file.path())
        .output()
        .expect("run openapi_spec_validator");
    // The validator quotes whole subtrees of the document; its first lines say what is wrong.
    let report: String = String::from_utf8_lossy(&out.stdout)
        .chars()
        .take(2000)
        .collect();
    assert!(
        out.status.success(),
        "openapi_spec_validator rejected the document:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}

/// Sends `method` to `path` (parameters filled in) without credentials; true when the router's
/// fallbacks answered rather than a route. They answer 404 "No such endpoint" and 405; anything
/// else (401, 400, 404 "Case not found", 200…) comes from a route. A HEAD answer has no body to
/// tell the two 404s apart, and no documented HEAD operation answers 404.
async fn reaches_fallback(app: &TestApp, method: &str, path: &str) -> bool {
    let verb = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let reply = app.send(verb.clone(), &concrete(path), None, None).await;
    reply.status == StatusCode::METHOD_NOT_ALLOWED
        || (reply.status == StatusCode::NOT_FOUND
            && (verb == Method::HEAD
                || reply.body["error"]["message"] == json!("No such endpoint")))
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let ops = operations(&doc);
    assert!(!ops.is_empty());
    for (method, path) in ops {
        assert!(
            !reaches_fallback(&app, &method, &path).await,
            "{} {path} is documented but not routed",
            method.to_uppercase()
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn every_contract_route_is_documented() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let ops = operations(&doc);
    let missing: Vec<String> = CONTRACT_ROUTES
        .iter()
        .filter(|(m, p)| !ops.iter().any(|(dm, dp)| dm == m && dp == p))
        .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(missing.is_empty(), "not in /openapi.json: {missing:?}");
    // And the list is not stale: each is served.
    for (method, path) in CONTRACT_ROUTES {
        assert!(
            !reaches_fallback(&app, method, path).await,
            "{} {path} is not routed",
            method.to_uppercase()
        );
    }
    app.stop().await;
}

/// One real answer, to be checked against the document.
struct Sample {
    method: &'static str,
    path: &'static str,
    status: u16,
    body: Value,
}

/// Records `reply` to `method path`, which must have answered `status`.
fn sample(method: &'static str, path: &'static str, status: u16, reply: Reply) -> Sample {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "{method} {path}: {}",
        reply.body
    );
    Sample {
        method,
        path,
        status: reply.status.as_u16(),
        body: reply.body,
    }
}

/// Validates each sample's body against the schema its operation documents for its status,
/// with the OpenAPI 3.1 schema dialect and format checks.
const VALIDATE_SAMPLES: &str = r#"
import json, sys
from openapi_schema_validator import OAS31Validator
doc = json.load(sys.stdin)
samples = doc.pop("x-samples")
failures = []
for s in samples:
    where = f'{s["method"].upper()} {s["path"]} {s["status"]}'
    op = doc["paths"].get(s["path"], {}).get(s["method"])
    response = (op or {}).get("responses", {}).get(str(s["status"]))
    if response is None:
        failures.append(f"{where}: status not documented")
        continue
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        failures.append(f"{where}: no JSON schema documented")
        continue
    root = dict(schema, components=doc["components"])
    validator = OAS31Validator(root, format_checker=OAS31Validator.FORMAT_CHECKER)
    for e in validator.iter_errors(s["body"]):
        path = "/".join(str(p) for p in e.absolute_path)
        failures.append(f"{where}: at /{path}: {e.message}")
print("\n".join(failures))
sys.exit(1 if failures else 0)
"#;

async fn wait_status(app: &TestApp, id: &str, want: &str) -> Value {
    eventually(Duration::from_secs(5), || async {
        let case = app.status(id).await;
        (case["status"] == json!(want)).then_some(case)
    })
    .await
}

#[tokio::test]
async fn real_answers_match_their_documented_schemas() {
    require_python_module("openapi_schema_validator", "openapi-spec-validator");
    let app = spawn_app().await;
    let mut samples = Vec::new();
    let status = "/webhook/support/status/{case_id}";
    let approve = "/webhook/support/approve/{case_id}";

    // Self-service path: intake, offer, approve, resolve, feedback.
    let created = app.post("/webhook/support/intake", intake_body(SSL)).await;
    let id = created.body["case_id"]
        .as_str()
        .expect("case_id")
        .to_string();
    let customer = created.body["customer_id"].clone();
    samples.push(sample("post", "/webhook/support/intake", 200, created));
    let offered = app
        .post(
            "/webhook/support/self-service",
            json!({"case_id": id, "customer_id": customer}),
        )
        .await;
    let approve_link = path_of(&offered.body["links"]["approve"]);
    samples.push(sample(
        "post",
        "/webhook/support/self-service",
        200,
        offered,
    ));
    let case = app.get(&format!("/webhook/support/status/{id}")).await;
    samples.push(sample("get", status, 200, case));
    samples.push(sample(
        "get",
        approve,
        200,
        app.get_anon(&approve_link).await,
    ));
    let resolved = wait_status(&app, &id, "resolved").await;
    let feedback = format!("{}&score=4", path_of(&resolved["links"]["feedback"]));
    let feedback = app.get_anon(&feedback).await;
    samples.push(sample(
        "get",
        "/webhook/support/feedback/{case_id}",
        200,
        feedback,
    ));
    let case = app.get(&format!("/webhook/support/status/{id}")).await;
    samples.push(sample("get", status, 200, case));

    // The customer rejects an offer: a review opens.
    let path_key = format!("/webhook/support/intake/{CLIENT_KEY}");
    let other = app.post(&path_key, intake_body(SSL)).await;
    let other_id = other.body["case_id"].as_str().expect("case_id").to_string();
    let other_customer = other.body["customer_id"].clone();
    samples.push(sample("post", "/webhook/support/intake/{key}", 200, other));
    let offered = app
        .post(
            "/webhook/support/self-service",
            json!({"case_id": other_id, "customer_id": other_customer}),
        )
        .await
        .ok();
    let reject_link = path_of(&offered["links"]["reject"]);
    samples.push(sample(
        "get",
        approve,
        200,
        app.get_anon(&reject_link).await,
    ));

    // Collaborative path: one review approved, another edited.
    for edit in [false, true] {
        let created = app.intake(FEATURE).await;
        let case_id = created["case_id"].as_str().expect("case_id").to_string();
        let body = json!({"case_id": case_id, "customer_id": created["customer_id"],
                          "urgency": "urgent"});
        let review = app.post("/webhook/support/collaborative", body).await;
        let review_id = review.body["review_id"]
            .as_str()
            .expect("review_id")
            .to_string();
        samples.push(sample(
            "post",
            "/webhook/support/collaborative",
            200,
            review,
        ));
        let case = app.get(&format!("/webhook/support/status/{case_id}")).await;
        samples.push(sample("get", status, 200, case));
        if edit {
            let body = json!({"reviewer": "jane@company.com",
                              "edited_solution": "Use the beta toggle.", "edit_reason": "Clearer"});
            let acted = app
                .post(&format!("/webhook/support/review/{review_id}/edit"), body)
                .await;
            samples.push(sample(
                "post",
                "/webhook/support/review/{review_id}/edit",
                200,
                acted,
            ));
        } else {
            let acted = app
                .get(&format!(
                    "/webhook/support/review/{review_id}/approve?reviewer=jane@company.com"
                ))
                .await;
            samples.push(sample(
                "get",
                "/webhook/support/review/{review_id}/{action}",
                200,
                acted,
            ));
        }
    }

    // Listings, operations and errors.
    samples.push(sample(
        "get",
        "/v1/cases",
        200,
        app.admin_get("/v1/cases").await,
    ));
    samples.push(sample(
        "get",
        "/v1/events",
        200,
        app.admin_get("/v1/events").await,
    ));
    samples.push(sample(
        "get",
        "/api/health",
        200,
        app.get_anon("/api/health").await,
    ));
    samples.push(sample(
        "get",
        "/ops/actors",
        200,
        app.admin_get("/ops/actors").await,
    ));
    let unknown = format!("/webhook/support/status/{}", uuid::Uuid::new_v4());
    samples.push(sample("get", status, 404, app.get(&unknown).await));
    let invalid = app
        .post("/webhook/support/intake", json!({"customer_name": 7}))
        .await;
    samples.push(sample("post", "/webhook/support/intake", 400, invalid));
    samples.push(sample(
        "get",
        "/v1/cases",
        401,
        app.get_anon("/v1/cases").await,
    ));

    let mut doc = document(&app).await;
    doc["x-samples"] = samples
        .iter()
        .map(|s| json!({"method": s.method, "path": s.path, "status": s.status, "body": s.body}))
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", VALIDATE_SAMPLES])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(doc.to_string().as_bytes())
        .expect("write samples");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "answers that do not match /openapi.json:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}
