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

/// Balance reads keep connections of their own: when PostgreSQL cuts every connection of the
/// app (a restart, a proxy's timeout), the next reads are answered from new ones, with the
/// balance the ledger holds, and no client sees the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn balance_reads_survive_their_connections_being_cut() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 40 }))
        .await;
    // Several reads at once, so that several reader connections are kept.
    let reads = (0..8).map(|_| app.balance(&user));
    for balance in futures::future::join_all(reads).await {
        assert_eq!(balance["available"], 40, "{balance}");
    }
    let admin = app.db().await;
    use sea_orm::ConnectionTrait;
    let cut = admin
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ))
        .await
        .unwrap();
    assert!(cut.len() >= 2, "the app's connections were cut");
    let reads = (0..8).map(|_| app.balance(&user));
    for balance in futures::future::join_all(reads).await {
        assert_eq!(balance["available"], 40, "{balance}");
    }
}
