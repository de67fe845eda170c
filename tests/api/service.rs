//! The service around the ledger: schema file, CLI, GraphiQL, limits, health, configuration.

use crate::helpers::*;
use serde_json::{Value, json};

#[test]
fn schema_graphql_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql is committed");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("schema")
        .output()
        .expect("tally schema runs");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed, tally::graphql::sdl());
    assert!(
        committed == printed,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}

#[test]
fn a_bad_setting_stops_start_up_and_names_the_variable() {
    for (variable, value) in [
        ("TALLY_LISTEN", "not-an-address"),
        ("TALLY_ADMIN_API_KEY", "short"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("TALLY_REQUEST_TIMEOUT_SECONDS", "soon"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("serve")
            .env(variable, value)
            .current_dir(std::env::temp_dir())
            .output()
            .expect("tally runs");
        assert!(
            !output.status.success(),
            "{variable}={value} must stop start-up"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
}

on_both_databases!(
    graphiql_is_served_to_browsers,
    health_and_readiness_answer,
    oversized_bodies_and_deep_queries_are_refused,
    introspection_works_within_the_limits,
    malformed_requests_are_client_errors,
);

async fn graphiql_is_served_to_browsers(app: TestApp) {
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("graphiql"), "{html}");
}

async fn health_and_readiness_answer(app: TestApp) {
    for path in ["healthz", "readyz"] {
        let response = app
            .client
            .get(format!("{}/{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

async fn oversized_bodies_and_deep_queries_are_refused(app: TestApp) {
    let user = new_user();
    let padding = "x".repeat(70 * 1024);
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "query": format!("# {padding}\n{{ balance(endUserId: \"{user}\") {{ available }} }}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    let mut deep = String::from("__typename");
    for _ in 0..4 {
        deep =
            format!("__schema {{ queryType {{ fields {{ type {{ ofType {{ {deep} }} }} }} }} }}");
    }
    let body = app.graphql(&format!("{{ {deep} }}"), json!({})).await;
    let code = error_code(&body);
    assert!(
        code == "GRAPHQL_VALIDATION_FAILED" || code == "BAD_USER_INPUT",
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("deep"),
        "{body}"
    );
}

async fn introspection_works_within_the_limits(app: TestApp) {
    // The query GraphiQL and code generators send, nested as deep as theirs.
    let query = "query IntrospectionQuery { __schema { queryType { name } mutationType { name }
      types { ...FullType } directives { name locations args { ...InputValue } } } }
      fragment FullType on __Type { kind name description
        fields(includeDeprecated: true) { name args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
        inputFields { ...InputValue } interfaces { ...TypeRef }
        enumValues(includeDeprecated: true) { name isDeprecated deprecationReason } possibleTypes { ...TypeRef } }
      fragment InputValue on __InputValue { name type { ...TypeRef } defaultValue }
      fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";
    let body = app.graphql_with_key(None, query, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let types = body["data"]["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Credits"));
}

async fn malformed_requests_are_client_errors(app: TestApp) {
    let response = app.post_raw("/graphql", "{ not json").await;
    assert!(response.status().is_client_error(), "{}", response.status());

    let body = app.graphql("{ balance(endUserId: ", json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_PARSE_FAILED");
    let body = app.graphql("{ noSuchField }", json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED");
    let body: Value = app
        .graphql(
            "query($id: ID!) { balance(endUserId: $id) { available } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
}
