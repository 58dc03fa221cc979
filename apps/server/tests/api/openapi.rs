//! `openapi.yaml` is the document the code generates, and the server serves it; the
//! document lists every problem code and documents every error as a problem.

use crate::helpers::{body, spawn_memory_app};

const STALE: &str = "openapi.yaml differs from the document the code generates; run `just openapi` and commit the result";

#[test]
fn openapi_yaml_is_the_document_the_code_generates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml");
    let committed =
        std::fs::read_to_string(path).expect("openapi.yaml at the top of the workspace");
    let generated = seatkeeper_server::openapi::yaml();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!("{STALE} (first difference at line {})", line + 1);
    }
}

#[tokio::test]
async fn the_server_serves_the_generated_document_at_openapi_json() {
    let app = spawn_memory_app().await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let served = body(res).await;
    let generated = serde_json::to_value(seatkeeper_server::openapi::document()).unwrap();
    assert_eq!(served, generated);
    assert_eq!(served["openapi"], "3.1.0");
}

#[test]
fn every_problem_code_of_the_app_is_in_the_problem_code_schema() {
    let doc = serde_json::to_value(seatkeeper_server::openapi::document()).unwrap();
    let codes = doc["components"]["schemas"]["ProblemCode"]["enum"]
        .as_array()
        .expect("ProblemCode has an enum");
    for code in seatkeeper_server::problem::Code::ALL {
        assert!(
            codes.iter().any(|c| c == code.as_str()),
            "{} is missing from ProblemCode",
            code.as_str()
        );
    }
}

#[test]
fn every_error_response_is_a_named_problem_response() {
    let doc = serde_json::to_value(seatkeeper_server::openapi::document()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('2') {
                    continue;
                }
                let reference = response["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} {status} is not a named response"));
                let name = reference.trim_start_matches("#/components/responses/");
                let content = &doc["components"]["responses"][name]["content"];
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{name} is not a problem"
                );
            }
        }
    }
}
