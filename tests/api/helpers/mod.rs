//! Black-box test harness: every test starts Tally on a random port with a fresh database and
//! talks HTTP to it. SQLite always; PostgreSQL when `TEST_DATABASE_URL` names a server
//! (`TALLY_REQUIRE_POSTGRES_TESTS=1` turns a missing URL into a failure, as CI wants).

pub mod process;
pub mod receiver;
pub mod stripe;
pub mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tally::ledger::clock::Clock;
use tally::{Application, Config};

pub const ADMIN_KEY: &str = "tally_sk_test_admin_key_0123456789abcdef";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running Tally and what a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    pub database_url: String,
    pub backend: Backend,
    pub client: reqwest::Client,
    /// The instances' clock: tests move it forward (`advance_clock`) instead of sleeping.
    pub clock: Clock,
    /// What the test changed in the configuration (applied to every instance it starts).
    configure: Configure,
    _database: TestDatabase,
}

/// Changes a test makes to the default configuration.
pub type Configure = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// No change: the default test configuration.
fn unchanged() -> Configure {
    Arc::new(|_: &mut Config| {})
}

enum TestDatabase {
    /// Owned by another `TestApp`.
    Borrowed,
    /// The directory holding the database file, deleted when the app is dropped.
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; a thread with its own runtime may block.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().expect("runtime");
                runtime.block_on(async {
                    if let Ok(db) = Database::connect(&admin_url).await {
                        let _ = db
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// The PostgreSQL server tests use, or `None` (skip) when not configured.
pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("TALLY_REQUIRE_POSTGRES_TESTS").is_ok_and(|v| v == "1") {
                panic!("TALLY_REQUIRE_POSTGRES_TESTS=1 but TEST_DATABASE_URL is not set");
            }
            eprintln!("skipped: set TEST_DATABASE_URL to run the PostgreSQL tests");
            None
        }
    }
}

/// `postgres://u@h:5432/db?x` with the database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// A new, empty database on `backend` (`None`: PostgreSQL is not configured here).
async fn fresh_database(backend: Backend) -> Option<(String, TestDatabase)> {
    Some(match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let path: PathBuf = dir.path().join("tally.db");
            (
                format!("sqlite://{}?mode=rwc", path.display()),
                TestDatabase::Sqlite { _dir: dir },
            )
        }
        Backend::Postgres => {
            let admin_url = postgres_url()?;
            let name = format!("tally_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(&admin_url)
                .await
                .expect("connect to TEST_DATABASE_URL");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create a test database");
            admin.close().await.ok();
            (
                with_database(&admin_url, &name),
                TestDatabase::Postgres { admin_url, name },
            )
        }
    })
}

impl TestApp {
    /// Starts Tally on a fresh database; `None` when the backend is not available here.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, unchanged()).await
    }

    /// Starts Tally on a fresh database with `configure` applied to its configuration.
    pub async fn spawn_with(backend: Backend, configure: Configure) -> Option<Self> {
        let (database_url, database) = fresh_database(backend).await?;
        Some(Self::spawn_on(backend, database_url, database, configure).await)
    }

    /// Starts Tally on a database that `fill` first puts content in (given the database URL):
    /// a database an older Tally wrote, for instance.
    pub async fn spawn_on_filled<F, Fut>(backend: Backend, fill: F) -> Option<Self>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let (database_url, database) = fresh_database(backend).await?;
        fill(database_url.clone()).await;
        Some(Self::spawn_on(backend, database_url, database, unchanged()).await)
    }

    async fn spawn_on(
        backend: Backend,
        database_url: String,
        database: TestDatabase,
        configure: Configure,
    ) -> Self {
        // Every instance the test starts shares one adjustable clock.
        let clock = Clock::adjustable();
        let configure: Configure = {
            let clock = clock.clone();
            Arc::new(move |config: &mut Config| {
                config.clock = clock.clone();
                configure(config);
            })
        };
        let app = Self::start_with(&database_url, &configure).await;
        Self {
            address: app,
            database_url,
            backend,
            client: reqwest::Client::new(),
            clock,
            configure,
            _database: database,
        }
    }

    /// Starts one more instance on this test's database, configured like the first: a second
    /// process would be the same (its own pool, pipeline and schedulers). Answers its address.
    pub async fn start_another(&self) -> String {
        Self::start_with(&self.database_url, &self.configure).await
    }

    /// This instance's address and a second instance's (`start_another`), on one database.
    pub async fn two_instances(&self) -> [String; 2] {
        [self.address.clone(), self.start_another().await]
    }

    /// A connection of the test's own to its database, for what the API cannot do (plant a
    /// difference, move time, hold a lock).
    pub async fn db(&self) -> DatabaseConnection {
        Database::connect(&self.database_url)
            .await
            .expect("the test's database")
    }

    /// The configuration tests start from, with `configure` applied.
    pub fn config(database_url: &str, configure: &Configure) -> Config {
        let mut config = Config::new(database_url);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin_api_key = Some(ADMIN_KEY.to_owned());
        config.request_timeout = Duration::from_secs(60);
        config.ws_init_timeout = Duration::from_secs(1);
        configure(&mut config);
        config
    }

    pub async fn start_with(database_url: &str, configure: &Configure) -> String {
        // The server's errors go to the test's captured output: shown when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("error")
            .with_test_writer()
            .try_init();
        let config = Self::config(database_url, configure);
        let app = Application::build(config).await.expect("Tally starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until(std::future::pending()));
        address
    }

    /// A handle that sends requests to another Tally (e.g. a second process) on the same
    /// database; it does not own the database.
    pub fn client_for(app: &TestApp, address: &str) -> TestApp {
        TestApp {
            address: address.to_owned(),
            database_url: app.database_url.clone(),
            backend: app.backend,
            client: app.client.clone(),
            clock: app.clock.clone(),
            configure: app.configure.clone(),
            _database: TestDatabase::Borrowed,
        }
    }

    /// How many events the outbox holds (`fanned_out: false`: only those not yet turned into
    /// deliveries). Events are written in the ledger write's own transaction, so once a write
    /// has answered, this counts what it emitted.
    pub async fn outbox_events(&self, fanned_out: impl Into<Option<bool>>) -> u64 {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        use tally::entities::webhook_event;
        let db = self.db().await;
        let mut query = webhook_event::Entity::find();
        if let Some(fanned_out) = fanned_out.into() {
            query = query.filter(webhook_event::Column::FannedOut.eq(fanned_out));
        }
        let count = query.count(&db).await.unwrap();
        db.close().await.unwrap();
        count
    }

    /// The instances' time now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Moves the instances' clock forward: what a test does instead of waiting for a grant to
    /// expire, a hold to time out or a period to end. The scheduler wakes at once.
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    /// POSTs a GraphQL request with the admin key; returns the whole response body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.graphql_with_key(Some(ADMIN_KEY), query, variables)
            .await
    }

    pub async fn graphql_with_key(
        &self,
        key: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Value {
        self.graphql_at(&self.address, key, query, variables).await
    }

    /// POSTs a GraphQL request to `/graphql` at `address` (this instance's, or another's on the
    /// same database), with `key` as the bearer credential; returns the whole response body.
    async fn graphql_at(
        &self,
        address: &str,
        key: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Value {
        let mut request = self
            .client
            .post(format!("{address}/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("every request gets an answer");
        assert_eq!(response.status(), 200, "GraphQL answers 200");
        response.json().await.expect("JSON body")
    }

    /// Sends `count` GraphQL requests at once, the i-th (`request(i)`: a document and its
    /// variables) to `addresses[i % 2]`, with the admin key; answers their bodies, in order.
    pub async fn concurrently(
        &self,
        addresses: &[String; 2],
        count: usize,
        request: impl Fn(usize) -> (&'static str, Value),
    ) -> Vec<Value> {
        join_all((0..count).map(|i| {
            let (query, variables) = request(i);
            self.graphql_at(&addresses[i % 2], Some(ADMIN_KEY), query, variables)
        }))
        .await
    }

    /// `data.<field>` of a request that must succeed.
    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        let body = self.graphql(query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        let data = body["data"].as_object().expect("data").clone();
        assert_eq!(data.len(), 1, "one root field per helper call");
        data.into_iter().next().unwrap().1
    }

    pub async fn add_credits(&self, input: Value) -> Value {
        self.ok(ADD_CREDITS, json!({ "input": input })).await
    }

    pub async fn subtract_credits(&self, input: Value) -> Value {
        self.ok(SUBTRACT_CREDITS, json!({ "input": input })).await
    }

    pub async fn balance(&self, end_user_id: &str) -> Value {
        self.ok(BALANCE, json!({ "id": end_user_id })).await
    }

    pub async fn available(&self, end_user_id: &str) -> i64 {
        self.balance(end_user_id).await["available"]
            .as_i64()
            .expect("available is an integer")
    }

    /// Every ledger entry of the end user, newest first, following the cursors.
    pub async fn all_entries(&self, end_user_id: &str) -> Vec<Value> {
        self.all_nodes(TRANSACTIONS, json!({ "id": end_user_id }))
            .await
    }

    /// Every node of the Relay connection that `query` (one root field, taking `$first` and
    /// `$after`) answers, following the cursors 100 at a time.
    pub async fn all_nodes(&self, query: &str, mut variables: Value) -> Vec<Value> {
        let mut nodes = Vec::new();
        let mut after: Option<String> = None;
        loop {
            variables["first"] = json!(100);
            variables["after"] = json!(after);
            let page = self.ok(query, variables.clone()).await;
            for edge in page["edges"].as_array().unwrap() {
                nodes.push(edge["node"].clone());
            }
            if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                return nodes;
            }
            after = Some(page["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
        }
    }

    /// A token for `end_user_id` minted with the admin key (`ttl_seconds`: Tally's default when
    /// `None`).
    pub async fn end_user_token(&self, end_user_id: &str, ttl_seconds: Option<i64>) -> String {
        self.end_user_token_with_key(ADMIN_KEY, end_user_id, ttl_seconds)
            .await
    }

    /// A token for `end_user_id` minted with the secret key `key`.
    pub async fn end_user_token_with_key(
        &self,
        key: &str,
        end_user_id: &str,
        ttl_seconds: Option<i64>,
    ) -> String {
        let mut input = json!({ "endUserId": end_user_id });
        if let Some(ttl_seconds) = ttl_seconds {
            input["ttlSeconds"] = json!(ttl_seconds);
        }
        let body = self
            .graphql_with_key(Some(key), CREATE_END_USER_TOKEN, json!({ "input": input }))
            .await;
        body["data"]["createEndUserToken"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("a token: {body}"))
            .to_owned()
    }

    /// A request to the Creduse-compatible REST API: `body` as JSON, `key` as the bearer
    /// credential. Answers the status and the JSON body.
    pub async fn rest(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// `POST <path>` to the REST API with the admin key, as the Creduse SDK sends it.
    pub async fn rest_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.rest(Method::POST, path, Some(body), Some(ADMIN_KEY))
            .await
    }

    /// `GET /get-active-balance` with the admin key and a JSON body, as the Creduse SDK sends it.
    pub async fn rest_balance(&self, end_user_id: &str) -> (u16, Value) {
        self.rest(
            Method::GET,
            "/get-active-balance",
            Some(json!({ "end_user_id": end_user_id })),
            Some(ADMIN_KEY),
        )
        .await
    }

    /// POSTs `body`, as it is, to `path` as `application/json` with the admin key.
    pub async fn post_raw(&self, path: &str, body: &'static str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_KEY)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

/// POSTs a GraphQL request with the admin key to `address` (another instance on the same
/// database, say); returns the whole body.
pub async fn post_to(app: &TestApp, address: &str, query: &str, variables: Value) -> Value {
    app.graphql_at(address, Some(ADMIN_KEY), query, variables)
        .await
}

pub fn new_user() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The `extensions.code` of the first error, asserting there is one and no data.
pub fn error_code(body: &Value) -> String {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("expected errors: {body}"));
    assert!(!errors.is_empty(), "expected errors: {body}");
    errors[0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a code: {body}"))
        .to_owned()
}

pub const ADD_CREDITS: &str = "mutation($input: AddCreditsInput!) { addCredits(input: $input) {
    grant { id amount remaining source effectiveAt expiresAt priority description metadata createdAt }
    entry { id sequence kind amount delta balanceAfter grantId allocations { grantId amount } }
    balance { available nextExpiry grants { id remaining } }
    replayed } }";

pub const SUBTRACT_CREDITS: &str = "mutation($input: SubtractCreditsInput!) { subtractCredits(input: $input) {
    entry { id sequence kind amount delta balanceAfter allocations { grantId amount } description metadata idempotencyKey }
    allocations { grantId amount }
    balance { available nextExpiry grants { id remaining } }
    replayed } }";

pub const BALANCE: &str = "query($id: ID!) { balance(endUserId: $id) {
    endUserId available nextExpiry
    grants { id amount remaining source effectiveAt expiresAt priority } } }";

pub const CREATE_END_USER_TOKEN: &str = "mutation($input: CreateEndUserTokenInput!) {
    createEndUserToken(input: $input) { token expiresAt } }";

pub const TRANSACTIONS: &str = "query($id: ID!, $first: Int, $after: String) {
    transactions(endUserId: $id, first: $first, after: $after) {
      edges { cursor node { id sequence kind amount delta balanceAfter grantId allocations { grantId amount } idempotencyKey createdAt } }
      pageInfo { hasNextPage hasPreviousPage endCursor } } }";

/// Generates, for each named `async fn(TestApp)`, one test on SQLite and one on PostgreSQL
/// (`<module>::sqlite::<name>`, `<module>::postgres::<name>`). The PostgreSQL one does nothing
/// when no server is configured (see `postgres_url`).
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        on_both_databases!(@from $crate::helpers::TestApp::spawn; $($name),*);
    };
    (@from $setup:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let env = $setup($crate::helpers::Backend::Sqlite)
                        .await
                        .expect("SQLite is always available");
                    super::$name(env).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(env) = $setup($crate::helpers::Backend::Postgres).await {
                        super::$name(env).await;
                    }
                }
            )*
        }
    };
}

/// Like `on_both_databases!`, for tests that take what `$setup(backend)` builds (an app with a
/// particular configuration, and whatever else the test needs). `$setup` answers `None` when
/// the backend is not available here.
macro_rules! on_both_databases_with {
    ($setup:ident; $($name:ident),* $(,)?) => {
        on_both_databases!(@from super::$setup; $($name),*);
    };
}

/// Runs `tally verify` on the test's database: (clean, what it printed).
pub fn run_verify(app: &TestApp) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("verify")
        .env("DATABASE_URL", &app.database_url)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("tally verify runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

pub fn assert_verify_clean(app: &TestApp) {
    let (ok, stdout) = run_verify(app);
    assert!(ok, "tally verify found differences:\n{stdout}");
}

/// Replays the end user's ledger, oldest entry first, and checks it against the stored state:
/// every `balanceAfter` is the running sum of the deltas, every grant's `remaining` is its
/// amount less what allocations took, and the sum is today's balance. For tests in which
/// nothing expires. Returns the replayed balance.
pub async fn assert_ledger_replays(app: &TestApp, end_user_id: &str) -> i64 {
    use std::collections::HashMap;
    let mut entries = app.all_entries(end_user_id).await;
    entries.reverse();
    let mut running = 0i64;
    let mut granted: HashMap<String, i64> = HashMap::new();
    let mut taken: HashMap<String, i64> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        assert_eq!(
            entry["sequence"].as_i64().unwrap(),
            index as i64 + 1,
            "sequences have no gaps"
        );
        running += entry["delta"].as_i64().unwrap();
        assert_eq!(
            entry["balanceAfter"].as_i64().unwrap(),
            running,
            "balanceAfter of {entry}"
        );
        assert!(running >= 0, "the balance never goes below zero");
        if entry["kind"] == "GRANT" {
            granted.insert(
                entry["grantId"].as_str().unwrap().to_owned(),
                entry["amount"].as_i64().unwrap(),
            );
        }
        let mut allocated = 0;
        for allocation in entry["allocations"].as_array().unwrap() {
            let amount = allocation["amount"].as_i64().unwrap();
            allocated += amount;
            *taken
                .entry(allocation["grantId"].as_str().unwrap().to_owned())
                .or_default() += amount;
        }
        if entry["kind"] == "DEBIT" || entry["kind"] == "CLAWBACK" {
            assert_eq!(
                allocated,
                entry["amount"].as_i64().unwrap(),
                "allocations cover the debit"
            );
        }
    }
    let balance = app.balance(end_user_id).await;
    assert_eq!(
        balance["available"].as_i64().unwrap(),
        running,
        "the ledger replays to the balance"
    );
    let listed: HashMap<String, i64> = balance["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["id"].as_str().unwrap().to_owned(),
                g["remaining"].as_i64().unwrap(),
            )
        })
        .collect();
    for (grant_id, amount) in &granted {
        let expected_remaining = amount - taken.get(grant_id).copied().unwrap_or(0);
        assert!(expected_remaining >= 0, "grant {grant_id} overdrawn");
        let stored = listed.get(grant_id).copied().unwrap_or(0);
        assert_eq!(stored, expected_remaining, "remaining of grant {grant_id}");
    }
    running
}

/// Runs the `tally` binary against the test's database; returns its standard output.
pub fn tally_cli(app: &TestApp, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env_remove("TALLY_ADMIN_API_KEY")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("tally runs");
    assert!(
        output.status.success(),
        "tally {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// How often `eventually` looks again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Looks until `check` returns `Some` (its value is returned), or panics after `timeout`
/// naming `what`: how a test waits for work another task does on its own (the expiry
/// scheduler, the webhook worker). It waits for a condition, never for a guessed duration.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
