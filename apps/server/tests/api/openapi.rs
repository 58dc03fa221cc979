//! `openapi.yaml` describes exactly the routes the app serves.

use std::collections::BTreeSet;

use yaml_rust2::{Yaml, YamlLoader};

fn spec() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml");
    let text = std::fs::read_to_string(path).expect("openapi.yaml at the top of the workspace");
    YamlLoader::load_from_str(&text)
        .expect("openapi.yaml is valid YAML")
        .remove(0)
}

#[test]
fn every_route_of_the_app_is_in_openapi_yaml_and_nothing_else_is() {
    let spec = spec();
    assert_eq!(spec["openapi"].as_str(), Some("3.1.0"));
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_hash().expect("paths") {
        for (method, op) in item.as_hash().unwrap() {
            let method = method.as_str().unwrap();
            if methods.contains(&method) {
                assert!(
                    !op["responses"].is_badvalue(),
                    "{method} {} has no responses",
                    path.as_str().unwrap()
                );
                documented.insert((method.to_uppercase(), path.as_str().unwrap().to_owned()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = seatkeeper_server::routes::router()
        .table()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_owned(), p.to_owned()))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "openapi.yaml documents routes the app lacks: {extra:?}"
    );
}

#[test]
fn every_problem_code_of_the_app_is_in_the_problem_schema() {
    let spec = spec();
    let codes: BTreeSet<&str> = spec["components"]["schemas"]["Problem"]["properties"]["code"]
        ["enum"]
        .as_vec()
        .expect("Problem.code has an enum")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for code in seatkeeper_server::problem::Code::ALL {
        assert!(
            codes.contains(code.as_str()),
            "{} is missing from Problem.code",
            code.as_str()
        );
    }
}
