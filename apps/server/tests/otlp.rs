//! Trace export: with `log.otlp_endpoint` set, the server sends its spans over OTLP/HTTP
//! (protobuf) to a collector, here a receiver that decodes what arrives the way a
//! collector does (`opentelemetry-proto`). A request's span is a server span and carries
//! its request id.

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{web, App, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value,
    common::v1::KeyValue, trace::v1::span::SpanKind,
};
use prost::Message;

mod common;

type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// An OTLP/HTTP receiver on a free port: every `POST /v1/traces` body, decoded.
fn collector() -> (u16, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let server = HttpServer::new(move || {
        let kept = kept.clone();
        App::new().route(
            "/v1/traces",
            web::post().to(move |body: web::Bytes| {
                let kept = kept.clone();
                async move {
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(req) => {
                            kept.lock().unwrap().push(req);
                            HttpResponse::Ok()
                                .content_type("application/x-protobuf")
                                .finish()
                        }
                        Err(_) => HttpResponse::BadRequest().finish(),
                    }
                }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("a port for the collector");
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (port, received)
}

fn string_value(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_exported_as_traces_to_the_configured_otlp_collector() {
    let (collector_port, received) = collector();
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_seatkeeper-server"))
        .env("SEATKEEPER_HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("SEATKEEPER_HTTP__WORKERS", "1")
        .env("SEATKEEPER_AUTH__ADMIN_TOKEN", "otlp-test-admin-token-0123")
        .env("SEATKEEPER_LOG__LEVEL", "info")
        .env(
            "SEATKEEPER_LOG__OTLP_ENDPOINT",
            format!("http://127.0.0.1:{collector_port}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start seatkeeper-server");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let request_id = loop {
        if let Ok(res) = client
            .get(format!("{base}/api/plans"))
            .header("X-Request-Id", "otlp-probe-1")
            .send()
            .await
        {
            if res.status() == 200 {
                break res.headers()["x-request-id"].to_str().unwrap().to_owned();
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(request_id, "otlp-probe-1");

    let found = loop {
        let found = received.lock().unwrap().iter().any(|export| {
            export.resource_spans.iter().any(|rs| {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| string_value(&r.attributes, "service.name"));
                service.as_deref() == Some("seatkeeper-server")
                    && rs.scope_spans.iter().flat_map(|s| &s.spans).any(|span| {
                        span.name == "request"
                            && span.kind == SpanKind::Server as i32
                            && string_value(&span.attributes, "request_id").as_deref()
                                == Some("otlp-probe-1")
                    })
            })
        });
        if found || tokio::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        found,
        "no server span named 'request' with request_id otlp-probe-1 from service seatkeeper-server reached the collector ({} exports)",
        received.lock().unwrap().len()
    );
}
