//! The bundles catalog: create, update, archive, who sees what, bad input, and the TOML file
//! upserted at start-up.

use std::sync::Arc;

use crate::helpers::stripe::*;
use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    bundles_are_created_updated_and_archived,
    end_users_see_active_bundles_and_change_nothing,
    bad_bundle_input_is_refused_and_writes_nothing,
    the_bundles_file_is_upserted_at_start_up,
);

const UPDATE_BUNDLE: &str = "mutation($input: UpdateBundleInput!) { updateBundle(input: $input) {
    bundle { id name credits validityDays priceAmount currency stripePriceId active createdAt updatedAt } } }";
const ARCHIVE_BUNDLE: &str = "mutation($id: UUID!) { archiveBundle(input: {id: $id}) {
    bundle { id active } } }";

async fn bundles(app: &TestApp, include_archived: bool) -> Vec<Value> {
    app.ok(BUNDLES, json!({ "all": include_archived }))
        .await
        .as_array()
        .unwrap()
        .clone()
}

fn names(bundles: &[Value]) -> Vec<&str> {
    bundles
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect()
}

async fn bundles_are_created_updated_and_archived(app: TestApp) {
    let big = app
        .create_bundle(json!({
            "name": "1000 credits", "credits": 1000, "validityDays": 365,
            "priceAmount": 1999, "currency": "USD", "stripePriceId": "price_big",
        }))
        .await;
    assert_eq!(big["currency"], "usd", "stored lower case");
    assert_eq!(big["active"], true);
    assert_eq!(big["validityDays"], 365);
    let small = app
        .create_bundle(json!({
            "name": " 100 credits ", "credits": 100, "priceAmount": 999, "currency": "usd",
            "stripePriceId": "price_small",
        }))
        .await;
    assert_eq!(small["name"], "100 credits");
    assert_eq!(small["validityDays"], Value::Null, "absent: never expires");
    assert_eq!(
        names(&bundles(&app, false).await),
        vec!["100 credits", "1000 credits"]
    );

    // Update some fields; the rest stay.
    let updated = app
        .ok(
            UPDATE_BUNDLE,
            json!({ "input": { "id": small["id"], "credits": 120, "validityDays": 30 } }),
        )
        .await["bundle"]
        .clone();
    assert_eq!(updated["credits"], 120);
    assert_eq!(updated["validityDays"], 30);
    assert_eq!(updated["name"], "100 credits");
    assert_eq!(updated["priceAmount"], 999);
    assert_eq!(updated["createdAt"], small["createdAt"]);
    assert_ne!(updated["updatedAt"], small["updatedAt"]);
    // null: never expires; absent: unchanged.
    let updated = app
        .ok(
            UPDATE_BUNDLE,
            json!({ "input": { "id": small["id"], "validityDays": null } }),
        )
        .await["bundle"]
        .clone();
    assert_eq!(updated["validityDays"], Value::Null);
    assert_eq!(updated["credits"], 120);

    // A price belongs to one bundle.
    let body = app
        .graphql(
            UPDATE_BUNDLE,
            json!({ "input": { "id": small["id"], "stripePriceId": "price_big" } }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "stripePriceId");
    let body = app
        .graphql(
            CREATE_BUNDLE,
            json!({ "input": { "name": "dup", "credits": 1, "priceAmount": 1,
                "currency": "usd", "stripePriceId": "price_big" } }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");

    // Archive: gone from the catalog, still there for secret keys; twice is fine.
    for _ in 0..2 {
        let archived = app.ok(ARCHIVE_BUNDLE, json!({ "id": big["id"] })).await;
        assert_eq!(archived["bundle"]["active"], false);
    }
    assert_eq!(names(&bundles(&app, false).await), vec!["100 credits"]);
    let all = bundles(&app, true).await;
    assert_eq!(names(&all), vec!["100 credits", "1000 credits"]);
    assert_eq!(all[1]["active"], false);
    // Restore.
    app.ok(
        UPDATE_BUNDLE,
        json!({ "input": { "id": big["id"], "active": true } }),
    )
    .await;
    assert_eq!(bundles(&app, false).await.len(), 2);

    let missing = json!(uuid::Uuid::new_v4());
    let body = app.graphql(ARCHIVE_BUNDLE, json!({ "id": missing })).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let body = app
        .graphql(
            UPDATE_BUNDLE,
            json!({ "input": { "id": missing, "credits": 5 } }),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
}

async fn end_users_see_active_bundles_and_change_nothing(app: TestApp) {
    let bundle = app.starter_bundle().await;
    let archived = app.starter_bundle().await;
    app.ok(ARCHIVE_BUNDLE, json!({ "id": archived["id"] }))
        .await;
    let user = new_user();
    let token = app
        .ok(
            "mutation($u: ID!) { createEndUserToken(input: {endUserId: $u}) { token } }",
            json!({ "u": user }),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let listed = app.graphql_with_key(Some(&token), BUNDLES, json!({})).await;
    assert!(listed.get("errors").is_none(), "{listed}");
    let ids: Vec<&Value> = listed["data"]["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["id"])
        .collect();
    assert_eq!(ids, vec![&bundle["id"]]);

    let forbidden = [
        (BUNDLES, json!({ "all": true })),
        (
            CREATE_BUNDLE,
            json!({ "input": { "name": "free", "credits": 1000000, "priceAmount": 0,
                "currency": "usd", "stripePriceId": "price_free" } }),
        ),
        (
            UPDATE_BUNDLE,
            json!({ "input": { "id": bundle["id"], "credits": 1000000 } }),
        ),
        (ARCHIVE_BUNDLE, json!({ "id": bundle["id"] })),
    ];
    for (query, variables) in &forbidden {
        let body = app
            .graphql_with_key(Some(&token), query, variables.clone())
            .await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
        let body = app.graphql_with_key(None, query, variables.clone()).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    }
    let all = bundles(&app, true).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|b| b["credits"] == 100));
    assert_eq!(
        all.iter().filter(|b| b["active"] == true).count(),
        1,
        "nothing changed"
    );
}

async fn bad_bundle_input_is_refused_and_writes_nothing(app: TestApp) {
    let valid = json!({ "name": "100 credits", "credits": 100, "validityDays": 365,
        "priceAmount": 999, "currency": "usd", "stripePriceId": "price_ok" });
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("name", json!(""), Some("name")),
        ("name", json!("x".repeat(201)), Some("name")),
        ("credits", json!(0), Some("credits")),
        ("credits", json!(-5), Some("credits")),
        ("credits", json!(1.5), None),
        ("validityDays", json!(0), Some("validityDays")),
        ("validityDays", json!(36526), Some("validityDays")),
        ("priceAmount", json!(-1), Some("priceAmount")),
        ("currency", json!("dollars"), Some("currency")),
        ("currency", json!("u$d"), Some("currency")),
        ("stripePriceId", json!(""), Some("stripePriceId")),
        (
            "stripePriceId",
            json!("price with spaces"),
            Some("stripePriceId"),
        ),
    ];
    for (field, value, named) in cases {
        let mut input = valid.clone();
        input[field] = value.clone();
        let body = app.graphql(CREATE_BUNDLE, json!({ "input": input })).await;
        assert_eq!(
            error_code(&body),
            "BAD_USER_INPUT",
            "{field}={value}: {body}"
        );
        if let Some(named) = named {
            assert_eq!(body["errors"][0]["extensions"]["field"], named, "{body}");
        }
    }
    assert_eq!(bundles(&app, true).await, Vec::<Value>::new());

    // A bad update leaves the bundle as it was.
    let bundle = app.create_bundle(valid).await;
    let body = app
        .graphql(
            UPDATE_BUNDLE,
            json!({ "input": { "id": bundle["id"], "name": "renamed", "credits": 0 } }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let all = bundles(&app, true).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["name"], "100 credits");
    assert_eq!(all[0]["credits"], 100);
}

async fn the_bundles_file_is_upserted_at_start_up(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundles.toml");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bundles.example.toml"))
            .unwrap();
    std::fs::write(&path, &example).unwrap();
    let with_file = |path: std::path::PathBuf| -> Configure {
        Arc::new(move |config| config.bundles_file = Some(path.clone()))
    };

    let first = TestApp::client_for(
        &app,
        &TestApp::start_with(&app.database_url, &with_file(path.clone())).await,
    );
    let seeded = bundles(&first, false).await;
    let summary: Vec<(i64, i64, i64, &str)> = seeded
        .iter()
        .map(|b| {
            (
                b["credits"].as_i64().unwrap(),
                b["priceAmount"].as_i64().unwrap(),
                b["validityDays"].as_i64().unwrap(),
                b["currency"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (100, 999, 365, "usd"),
            (500, 1499, 365, "usd"),
            (1000, 1999, 365, "usd")
        ]
    );

    // Started again with an edited file: the same bundles are updated, not duplicated.
    let edited = example
        .replace(
            "name = \"500 credits\"",
            "name = \"500 credits (best value)\"",
        )
        .replacen("active = true ", "active = false", 1);
    std::fs::write(&path, edited).unwrap();
    TestApp::start_with(&app.database_url, &with_file(path.clone())).await;
    let all = bundles(&app, true).await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["active"], false, "the first entry archived");
    assert_eq!(all[1]["name"], "500 credits (best value)");
    assert_eq!(
        all.iter().map(|b| &b["id"]).collect::<Vec<_>>(),
        seeded.iter().map(|b| &b["id"]).collect::<Vec<_>>()
    );

    // A bad file stops start-up, naming the variable, the file and the entry.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[bundles]]\nname = \"x\"\ncredits = -1\nprice_amount = 1\ncurrency = \"usd\"\n\
         stripe_price_id = \"price_x\"\n",
    )
    .unwrap();
    for path in [bad, dir.path().join("missing.toml")] {
        let config = TestApp::config(&app.database_url, &with_file(path.clone()));
        let error = match tally::Application::build(config).await {
            Ok(_) => panic!("{} must stop start-up", path.display()),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.starts_with("TALLY_BUNDLES_FILE"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
    }
    assert_eq!(bundles(&app, true).await.len(), 3);
}
