//! Input built to hurt: whatever a client sends, the server answers with a client error and
//! keeps serving everyone else.

use std::time::Duration;

use crate::helpers::ws::{Event, Protocol, Socket};
use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    deeply_nested_documents_are_refused_on_every_path,
    nul_characters_are_refused_in_every_text,
    instants_outside_the_years_are_refused,
    input_fields_given_twice_are_refused,
    errors_per_answer_are_capped,
    errors_the_schema_raises_are_coded_on_every_path,
    oversized_bodies_sent_concurrently_get_413,
);

/// `{ balance(endUserId: [[[…1…]]]) { available } }` and the same with `{a: {a: …}}`.
fn deep_documents(levels: usize) -> Vec<(String, String)> {
    let lists = format!(
        "{{ balance(endUserId: {}1{}) {{ available }} }}",
        "[".repeat(levels),
        "]".repeat(levels)
    );
    let objects = format!(
        "{{ balance(endUserId: {}1{}) {{ available }} }}",
        "{a: ".repeat(levels),
        "}".repeat(levels)
    );
    let subscription = format!(
        "subscription {{ balanceChanged(endUserId: {}1{}) {{ available }} }}",
        "[".repeat(levels),
        "]".repeat(levels)
    );
    vec![
        (format!("lists x{levels}"), lists),
        (format!("objects x{levels}"), objects),
        (format!("subscription lists x{levels}"), subscription),
    ]
}

/// Refused by the nesting guard itself (debug builds' parser may fail on its own before its
/// stack runs out; release builds' would overflow it and abort the process).
fn assert_parse_refused(what: &str, body: &Value) {
    assert_eq!(error_code(body), "GRAPHQL_PARSE_FAILED", "{what}: {body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nests brackets more than"),
        "{what}: {message}"
    );
    assert!(body["data"].is_null(), "{what}: {body}");
}

async fn post_status(app: &TestApp, key: Option<&str>, document: &str) -> u16 {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": document }));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("answered").status().as_u16()
}

/// `GET /graphql?query=<document>` over a plain TCP connection: (status, body).
async fn raw_get(address: &str, document: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let query: String = url_encode(document);
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!(
        "GET /graphql?query={query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {}", &answer[..answer.len().min(200)]));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, dechunk(&body))
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The body of a `Transfer-Encoding: chunked` answer, or the body as it is.
fn dechunk(body: &str) -> String {
    if body.trim_start().starts_with('{') {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

async fn assert_still_serving(app: &TestApp) {
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("the server still answers");
    assert_eq!(health.status(), 200);
    assert_eq!(app.available(&new_user()).await, 0);
}

async fn deeply_nested_documents_are_refused_on_every_path(app: TestApp) {
    for levels in [2_000, 20_000] {
        for (what, document) in deep_documents(levels) {
            // Bodies and WebSocket messages are limited to 64 KiB: past that, the document is
            // refused for its size before anything reads it (20,000 nested objects).
            let fits = document.len() < 60 * 1024;

            // POST, with no credential and with one.
            for key in [None, Some(ADMIN_KEY)] {
                if fits {
                    let body = app.graphql_with_key(key, &document, json!({})).await;
                    assert_parse_refused(&format!("POST {what}"), &body);
                } else {
                    let status = post_status(&app, key, &document).await;
                    assert_eq!(status, 413, "POST {what}");
                }
            }

            // GET ?query=, sent raw: at 20,000 levels the URL is longer than HTTP clients build.
            let (status, body) = raw_get(&app.address, &document).await;
            if status == 200 {
                let body: Value = serde_json::from_str(&body).expect("JSON body");
                assert_parse_refused(&format!("GET {what}"), &body);
            } else {
                // A URL too long for the HTTP layer is refused before anything parses it.
                assert!((400..500).contains(&status), "GET {what}: {status}");
            }

            // Both WebSocket protocols.
            for protocol in Protocol::BOTH {
                let mut socket = Socket::connect(&app.address, protocol, ADMIN_KEY).await;
                socket.subscribe("deep", &document, json!({})).await;
                match socket.next_event(Duration::from_secs(10)).await {
                    Some(Event::Errors(errors)) if fits => {
                        let body = json!({ "errors": errors, "data": null });
                        assert_parse_refused(&format!("{protocol:?} {what}"), &body);
                    }
                    // "Message too big".
                    Some(Event::Closed(code, _)) if !fits => {
                        assert!(
                            matches!(code, Some(1009) | None),
                            "{protocol:?} {what}: {code:?}"
                        )
                    }
                    other => panic!("{protocol:?} {what}: got {other:?}"),
                }
            }
            assert_still_serving(&app).await;
        }
    }
}

/// The first error's `extensions.field`.
fn error_field(body: &Value) -> String {
    body["errors"][0]["extensions"]["field"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a field: {body}"))
        .to_owned()
}

/// Asserts `BAD_USER_INPUT` naming `field`, and no data.
fn assert_bad_input(what: &str, body: &Value, field: &str) {
    assert_eq!(error_code(body), "BAD_USER_INPUT", "{what}: {body}");
    assert_eq!(error_field(body), field, "{what}: {body}");
    assert!(
        body["data"].is_null()
            || body["data"]
                .as_object()
                .is_some_and(|d| d.values().all(Value::is_null)),
        "{what}: {body}"
    );
}

/// A NUL (U+0000) cannot be stored in PostgreSQL text; SQLite would store it. Both refuse it
/// the same way in every text a client sends, and nothing is written.
async fn nul_characters_are_refused_in_every_text(app: TestApp) {
    let user = new_user();
    let grant = app
        .add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    let grant_id = grant["grant"]["id"].as_str().unwrap().to_owned();
    let debit = app
        .subtract_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    let debit_id = debit["entry"]["id"].as_str().unwrap().to_owned();
    let entries_before = app.all_entries(&user).await.len();

    let add = |extra: Value| {
        let mut input = json!({ "endUserId": user, "amount": 5 });
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        input
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "addCredits description",
            ADD_CREDITS,
            json!({ "input": add(json!({ "description": "a\u{0}b" })) }),
            "description",
        ),
        (
            "addCredits metadata string",
            ADD_CREDITS,
            json!({ "input": add(json!({ "metadata": { "plan": { "tier": ["x\u{0}"] } } })) }),
            "metadata",
        ),
        (
            "addCredits metadata key",
            ADD_CREDITS,
            json!({ "input": add(json!({ "metadata": { "k\u{0}": 1 } })) }),
            "metadata",
        ),
        (
            "addCredits idempotencyKey",
            ADD_CREDITS,
            json!({ "input": add(json!({ "idempotencyKey": "key\u{0}" })) }),
            "idempotencyKey",
        ),
        (
            "subtractCredits description",
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 1, "description": "\u{0}" } }),
            "description",
        ),
        (
            "subtractCredits metadata",
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 1, "metadata": { "a": "\u{0}" } } }),
            "metadata",
        ),
        (
            "createHold description",
            "mutation($input: CreateHoldInput!) { createHold(input: $input) { replayed } }",
            json!({ "input": { "endUserId": user, "amount": 1, "ttlSeconds": 60, "description": "h\u{0}" } }),
            "description",
        ),
        (
            "voidGrant reason",
            "mutation($input: VoidGrantInput!) { voidGrant(input: $input) { replayed } }",
            json!({ "input": { "grantId": grant_id, "reason": "r\u{0}" } }),
            "reason",
        ),
        (
            "reverseDebit reason",
            "mutation($input: ReverseDebitInput!) { reverseDebit(input: $input) { replayed } }",
            json!({ "input": { "entryId": debit_id, "reason": "r\u{0}" } }),
            "reason",
        ),
        (
            "createBundle name",
            "mutation($input: CreateBundleInput!) { createBundle(input: $input) { bundle { id } } }",
            json!({ "input": { "name": "b\u{0}", "credits": 10, "priceAmount": 100, "currency": "usd", "stripePriceId": "price_nul_1" } }),
            "name",
        ),
    ];
    for (what, document, variables, field) in cases {
        let body = app.graphql(document, variables).await;
        assert_bad_input(what, &body, field);
    }
    // The same NUL written as an escape in the document itself.
    let literal = format!(
        "mutation {{ subtractCredits(input: {{ endUserId: \"{user}\", amount: 1, description: \"x\\u0000y\" }}) {{ replayed }} }}"
    );
    assert_bad_input(
        "literal",
        &app.graphql(&literal, json!({})).await,
        "description",
    );

    // updateBundle's name too.
    let bundle = app
        .ok(
            "mutation($input: CreateBundleInput!) { createBundle(input: $input) { bundle { id } } }",
            json!({ "input": { "name": "ok", "credits": 10, "priceAmount": 100, "currency": "usd", "stripePriceId": "price_nul_2" } }),
        )
        .await;
    let body = app
        .graphql(
            "mutation($input: UpdateBundleInput!) { updateBundle(input: $input) { bundle { name } } }",
            json!({ "input": { "id": bundle["bundle"]["id"], "name": "n\u{0}" } }),
        )
        .await;
    assert_bad_input("updateBundle name", &body, "name");

    // Nothing was written by any of them.
    assert_eq!(app.all_entries(&user).await.len(), entries_before);
    assert_eq!(app.available(&user).await, 90);
    let bundles = app
        .ok("{ bundles(includeArchived: true) { name } }", json!({}))
        .await;
    assert_eq!(bundles, json!([{ "name": "ok" }]));
}

/// Instants must fall in the years 1970 to 9999 (UTC). PostgreSQL refuses some instants SQLite
/// stores (`-262143-01-01`); both answer `BAD_USER_INPUT` naming the field instead.
async fn instants_outside_the_years_are_refused(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    for instant in [
        "-262143-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "+10000-01-01T00:00:00Z",
        "+262142-12-31T23:59:59Z",
    ] {
        for field in ["effectiveAt", "expiresAt"] {
            let body = app
                .graphql(
                    ADD_CREDITS,
                    json!({ "input": { "endUserId": user, "amount": 5, field: instant } }),
                )
                .await;
            assert_eq!(
                error_code(&body),
                "BAD_USER_INPUT",
                "{field} {instant}: {body}"
            );
            assert_eq!(error_field(&body), field, "{field} {instant}: {body}");
        }
        let body = app
            .graphql(
                "query($id: ID!, $at: DateTime!) { balance(endUserId: $id, at: $at) { available } }",
                json!({ "id": user, "at": instant }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "at {instant}: {body}");
        assert_eq!(error_field(&body), "at", "at {instant}: {body}");
        for field in ["from", "to"] {
            let document = format!(
                "query($id: ID!, $t: DateTime!) {{ transactions(endUserId: $id, {field}: $t) {{ edges {{ cursor }} }} }}"
            );
            let body = app
                .graphql(&document, json!({ "id": user, "t": instant }))
                .await;
            assert_eq!(
                error_code(&body),
                "BAD_USER_INPUT",
                "{field} {instant}: {body}"
            );
            assert_eq!(error_field(&body), field, "{field} {instant}: {body}");
        }
    }
    // The edges of the range are accepted.
    let body = app
        .graphql(
            "query($id: ID!) { early: balance(endUserId: $id, at: \"1970-01-01T00:00:00Z\") { available }
               late: transactions(endUserId: $id, to: \"9999-12-31T23:59:59Z\") { edges { cursor } } }",
            json!({ "id": user }),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["early"]["available"], 0);
    assert_eq!(app.all_entries(&user).await.len(), 1);
    assert_eq!(app.available(&user).await, 10);
}

/// `{amount: 1, amount: 7}` broke GraphQL's "Input Object Field Uniqueness" rule and debited 7.
/// Every input object, however it is nested, is checked; nothing is written.
async fn input_fields_given_twice_are_refused(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    let documents = [
        format!(
            "mutation {{ subtractCredits(input: {{endUserId: \"{user}\", amount: 1, amount: 7}}) {{ replayed }} }}"
        ),
        format!(
            "mutation {{ subtractCredits(input: {{endUserId: \"{user}\", amount: 1, endUserId: \"{user}\"}}) {{ replayed }} }}"
        ),
        format!(
            "mutation {{ addCredits(input: {{endUserId: \"{user}\", amount: 1, metadata: {{plan: {{tier: 1, tier: 2}}}}}}) {{ replayed }} }}"
        ),
        format!(
            "mutation($i: SubtractCreditsInput! = {{endUserId: \"{user}\", amount: 1, amount: 7}}) {{ subtractCredits(input: $i) {{ replayed }} }}"
        ),
        format!(
            "{{ transactions(endUserId: \"{user}\", kinds: [DEBIT], first: 1) {{ edges {{ cursor }} }} a: balance(endUserId: \"{user}\") {{ grants(x: [{{k: 1, k: 2}}]) {{ id }} }} }}"
        ),
    ];
    for document in &documents {
        let body = app.graphql(document, json!({})).await;
        assert_eq!(
            error_code(&body),
            "GRAPHQL_VALIDATION_FAILED",
            "{document}: {body}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("only one input field"), "{message}");
        assert!(body["data"].is_null(), "{body}");
    }
    // Sent as a subscription over WebSocket, it is refused the same way.
    let subscription = format!(
        "subscription {{ balanceChanged(endUserId: \"{user}\") {{ grants(x: {{a: 1, a: 2}}) {{ id }} }} }}"
    );
    for protocol in Protocol::BOTH {
        let mut socket = Socket::connect(&app.address, protocol, ADMIN_KEY).await;
        socket.subscribe("dup", &subscription, json!({})).await;
        match socket.next_event(Duration::from_secs(10)).await {
            Some(Event::Errors(errors)) => {
                let body = json!({ "errors": errors });
                assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
            }
            other => panic!("{protocol:?}: got {other:?}"),
        }
    }
    // The same in JSON: the variables of a GraphQL request, and Creduse REST bodies.
    let raw = format!(
        "{{\"query\": \"mutation($i: SubtractCreditsInput!) {{ subtractCredits(input: $i) {{ replayed }} }}\", \
         \"variables\": {{\"i\": {{\"endUserId\": \"{user}\", \"amount\": 1, \"amount\": 7}}}}}}"
    );
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(ADMIN_KEY)
        .header("Content-Type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "BAD_REQUEST", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"amount\" twice")
    );
    for path in ["/subtract", "/add"] {
        let response = app
            .client
            .post(format!("{}{path}", app.address))
            .bearer_auth(ADMIN_KEY)
            .header("Content-Type", "application/json")
            .body(format!(
                "{{\"end_user_id\": \"{user}\", \"amount\": 1, \"amount\": 7}}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], "VALIDATION_ERROR", "{path}: {body}");
    }
    assert_eq!(app.available(&user).await, 100);
    assert_eq!(app.all_entries(&user).await.len(), 1);
}

/// 3,000 unknown arguments in a 29 KB document: at most 20 errors and one that counts the rest,
/// by POST and over both WebSocket protocols.
async fn errors_per_answer_are_capped(app: TestApp) {
    let user = new_user();
    let arguments: String = (0..3_000).map(|i| format!("a{i}: 1, ")).collect();
    let document = format!("{{ balance(endUserId: \"{user}\", {arguments}) {{ available }} }}");
    assert!(document.len() > 28_000, "{}", document.len());
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "query": document }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.len() < 10_000, "{} bytes", text.len());
    let body: Value = serde_json::from_str(&text).unwrap();
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 21, "{body}");
    assert_eq!(errors[20]["extensions"]["omittedErrors"], 2_980, "{body}");
    assert_eq!(
        errors[20]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{body}"
    );
    assert!(
        errors.iter().all(|e| e["extensions"]["code"].is_string()),
        "{body}"
    );

    let subscription = format!(
        "subscription {{ balanceChanged(endUserId: \"{user}\", {arguments}) {{ available }} }}"
    );
    for protocol in Protocol::BOTH {
        let mut socket = Socket::connect(&app.address, protocol, ADMIN_KEY).await;
        socket.subscribe("many", &subscription, json!({})).await;
        match socket.next_event(Duration::from_secs(10)).await {
            Some(Event::Errors(errors)) => {
                let errors = errors.as_array().unwrap();
                assert_eq!(errors.len(), 21, "{protocol:?}");
                assert_eq!(errors[20]["extensions"]["omittedErrors"], 2_980);
            }
            other => panic!("{protocol:?}: got {other:?}"),
        }
    }
}

/// Errors async-graphql raises itself, whichever stage finds them (its parse-time recursion
/// check, validation, a variable's value, the operation name), carry the code a client expects,
/// by POST and over both WebSocket protocols; nothing is written.
async fn errors_the_schema_raises_are_coded_on_every_path(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    // 40 selection sets deep: within the bracket limit, past async-graphql's recursion limit.
    let deep = format!("{{ {}__typename{} }}", "a { ".repeat(40), " }".repeat(40));
    let cases = [
        (deep, json!({}), "GRAPHQL_PARSE_FAILED"),
        (
            "{ noSuchField }".to_owned(),
            json!({}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            crate::helpers::SUBTRACT_CREDITS.to_owned(),
            json!({ "input": { "endUserId": user, "amount": 1.5 } }),
            "BAD_USER_INPUT",
        ),
    ];
    for (document, variables, code) in &cases {
        let body = app.graphql(document, variables.clone()).await;
        assert_eq!(error_code(&body), *code, "POST {document:.60}: {body}");
        for protocol in Protocol::BOTH {
            let mut socket = Socket::connect(&app.address, protocol, ADMIN_KEY).await;
            socket.subscribe("op", document, variables.clone()).await;
            match socket.next_event(Duration::from_secs(10)).await {
                Some(Event::Errors(errors)) => {
                    let body = json!({ "errors": errors });
                    assert_eq!(error_code(&body), *code, "{protocol:?} {document:.60}");
                }
                other => panic!("{protocol:?} {document:.60}: got {other:?}"),
            }
        }
    }
    // An operation name the document does not have.
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "query": "query A { __typename }", "operationName": "B" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(body["data"].is_null(), "{body}");
    assert_eq!(app.available(&user).await, 10);
}

/// Bodies over `TALLY_MAX_BODY_BYTES` (64 KiB) sent at once on many connections: every one is
/// answered 413, never a connection reset, on every route that takes a body; the server reads
/// (and drops) the rest of the body before answering, so the answer is not lost.
async fn oversized_bodies_sent_concurrently_get_413(app: TestApp) {
    let routes = [
        "/graphql",
        "/add",
        "/subtract",
        "/start-cycle",
        "/webhooks/stripe",
    ];
    let mut requests = Vec::new();
    for round in 0..4 {
        for route in routes {
            for size in [65 * 1024, 256 * 1024, 1024 * 1024] {
                let client = app.client.clone();
                let url = format!("{}{route}", app.address);
                requests.push(tokio::spawn(async move {
                    let body = format!("{{\"query\": \"{}\"}}", "x".repeat(size));
                    let response = client
                        .post(&url)
                        .bearer_auth(ADMIN_KEY)
                        .header("Content-Type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match response {
                        Ok(response) => (round, url, size, Ok(response.status().as_u16())),
                        Err(error) => (round, url, size, Err(format!("{error:?}"))),
                    }
                }));
            }
        }
    }
    for request in requests {
        let (round, url, size, outcome) = request.await.unwrap();
        assert_eq!(outcome, Ok(413), "round {round}: {url} with {size} bytes");
    }
    // Chunked bodies (no Content-Length) too, over raw connections.
    let mut raw = Vec::new();
    for _ in 0..8 {
        let address = app.address.clone();
        raw.push(tokio::spawn(async move {
            raw_chunked_post(&address, 512 * 1024).await
        }));
    }
    for request in raw {
        assert_eq!(request.await.unwrap(), 413);
    }
    assert_still_serving(&app).await;
}

/// POSTs `size` bytes to /graphql in 8 KiB chunks; the answer's status (0: no answer).
async fn raw_chunked_post(address: &str, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let chunk = vec![b'x'; 8 * 1024];
    let mut sent = 0;
    while sent < size {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
