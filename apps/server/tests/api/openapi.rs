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

fn document() -> serde_json::Value {
    serde_json::to_value(seatkeeper_server::openapi::document()).unwrap()
}

/// The schema of the query parameter `name` of the operation at `path`.
fn query_schema(doc: &serde_json::Value, path: &str, name: &str) -> serde_json::Value {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name && p["in"] == "query")
        .unwrap_or_else(|| panic!("{path} has no query parameter {name}"))["schema"]
        .clone()
}

// Found by schemathesis: `cursor` was any string, so `?cursor=` was valid by the
// document and answered 400.
#[test]
fn each_list_cursor_is_typed_as_the_list_writes_it() {
    let doc = document();
    for path in ["/api/plans", "/api/customers/{id}/subscriptions"] {
        let schema = query_schema(&doc, path, "cursor");
        assert_eq!(schema["type"], "string", "{path}");
        assert_eq!(schema["format"], "uuid", "{path}");
    }
    let audit = query_schema(&doc, "/api/plans/{id}/audit", "cursor");
    assert_eq!(audit["type"], "integer");
    assert_eq!(audit["format"], "int64");
    assert_eq!(audit["minimum"], 0);
}

// Found by schemathesis: `{}` was a valid UpdatePlan by the document and answered 400.
#[test]
fn update_plan_needs_at_least_one_property() {
    let doc = document();
    let schema = &doc["components"]["schemas"]["UpdatePlan"];
    assert_eq!(schema["minProperties"], 1);
    assert!(schema.get("maxProperties").is_none(), "{schema}");
}

// Found by schemathesis: the parameter's schema had the pattern of the ids the server
// keeps, so an id the server replaces (and answers 200 to) was invalid by the document.
#[test]
fn the_request_id_parameter_takes_any_string() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let parameter = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "X-Request-Id")
                .unwrap_or_else(|| panic!("{method} {path} lacks X-Request-Id"));
            assert_eq!(
                parameter["schema"],
                serde_json::json!({"type": "string"}),
                "{method} {path}"
            );
        }
    }
}

// Found by schemathesis: the pattern was `\S`, which names with control characters
// matched (400 from the server).
#[test]
fn the_plan_name_pattern_matches_exactly_the_names_the_server_accepts() {
    let doc = document();
    let schema = &doc["components"]["schemas"]["PlanName"];
    let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
    let long = "x".repeat(100);
    let too_long = "x".repeat(101);
    let padded = format!(" \t{long}\u{3000}\n");
    for name in [
        "Team",
        "a",
        "a b",
        "  Équipe 東京 🚀 ",
        "\tTeam\r\n",
        "\u{85}Team\u{a0}",
        "\u{2028}T\u{2003}",
        &long,
        &padded,
        "",
        "   ",
        "\t\n",
        &too_long,
        "Te\u{1}am",
        "Te\tam",
        "Team\u{9f}",
        "\u{1c}Team",
        "Team\u{7f}",
        "\u{200b}",
    ] {
        assert_eq!(
            pattern.is_match(name),
            seatkeeper_domain::PlanName::parse(name).is_ok(),
            "{name:?}"
        );
    }
}

#[test]
fn the_idempotency_key_pattern_leaves_out_the_spaces_http_drops() {
    let doc = document();
    let parameter = doc["paths"]["/api/subscriptions/purchase"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap()
        .clone();
    let pattern = regex::Regex::new(parameter["schema"]["pattern"].as_str().unwrap()).unwrap();
    let longest = "k".repeat(255);
    for key in ["k", "k 1", "order-2026-0001", "~!", longest.as_str()] {
        assert!(pattern.is_match(key), "{key:?}");
    }
    let too_long = "k".repeat(256);
    for key in ["", " ", "   ", " k", "k ", "k\t1", "clé", too_long.as_str()] {
        assert!(!pattern.is_match(key), "{key:?}");
    }
}
