//! Benchmark (not a test): live-balance subscriptions against a running Tally.
//!
//! Prints resident memory per idle subscription, push latency (commit to client) p50/p99 for
//! debits back to back and for debits `--gap-ms` apart (Tally paces a subscriber's balances:
//! `TALLY_LIVE_MIN_INTERVAL_MS`), and the debit rate on the watched end user beside an unwatched
//! one, in alternating rounds. `bench/subscriptions.sh` builds and starts
//! Tally and runs this; to run it by hand:
//!
//! ```sh
//! cargo run --release --example bench_subscriptions -- \
//!     --url http://127.0.0.1:8080 --key "$KEY" --pid "$(pgrep -f 'tally serve')" --subscriptions 10000
//! ```

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

struct Args {
    url: String,
    key: String,
    pid: Option<u32>,
    subscriptions: usize,
    debits: usize,
    concurrency: usize,
    hot_subscribers: usize,
    rounds: usize,
    gap_ms: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: "http://127.0.0.1:8080".into(),
        key: String::new(),
        pid: None,
        subscriptions: 10_000,
        debits: 2_000,
        concurrency: 16,
        hot_subscribers: 100,
        rounds: 5,
        gap_ms: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value,
            "--key" => args.key = value,
            "--pid" => args.pid = Some(value.parse().expect("--pid")),
            "--subscriptions" => args.subscriptions = value.parse().expect("--subscriptions"),
            "--debits" => args.debits = value.parse().expect("--debits"),
            "--concurrency" => args.concurrency = value.parse().expect("--concurrency"),
            "--hot-subscribers" => args.hot_subscribers = value.parse().expect("--hot-subscribers"),
            "--rounds" => args.rounds = value.parse().expect("--rounds"),
            "--gap-ms" => args.gap_ms = value.parse().expect("--gap-ms"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!args.key.is_empty(), "--key is required");
    assert!(args.rounds > 0, "--rounds must be at least 1");
    args
}

fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn graphql(client: &reqwest::Client, args: &Args, query: &str, variables: Value) -> Value {
    let body: Value = client
        .post(format!("{}/graphql", args.url))
        .bearer_auth(&args.key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

const SUBTRACT: &str = "mutation($u: ID!) { subtractCredits(input: {endUserId: $u, amount: 1}) { entry { createdAt } } }";
const SUBSCRIBE: &str = "subscription($u: ID!) { balanceChanged(endUserId: $u) { available } }";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_subscription(args: &Args, user: &str) -> Socket {
    let url = format!("{}/graphql", args.url.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", args.key) } });
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIBE, "variables": { "u": user } } });
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    // Ack, then the first snapshot.
    let mut seen_snapshot = false;
    while !seen_snapshot {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => seen_snapshot = text.contains("\"next\""),
            Some(Ok(_)) => {}
            other => panic!("subscription failed: {other:?}"),
        }
    }
    socket
}

async fn debit_rate(client: &reqwest::Client, args: &Args, user: &str) -> f64 {
    let started = Instant::now();
    stream::iter(0..args.debits)
        .for_each_concurrent(args.concurrency, |_| async {
            graphql(client, args, SUBTRACT, json!({ "u": user })).await;
        })
        .await;
    args.debits as f64 / started.elapsed().as_secs_f64()
}

/// Commit-to-client latency of 100 debits of `user`, one at a time, as `probe` sees them;
/// with `gap`, each debit waits that long after the previous push.
async fn push_latencies_ms(
    client: &reqwest::Client,
    args: &Args,
    probe: &mut Socket,
    user: &str,
    gap: Option<Duration>,
) -> Vec<f64> {
    let mut latencies_ms = Vec::new();
    for _ in 0..100 {
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
        let answer = graphql(client, args, SUBTRACT, json!({ "u": user })).await;
        let committed: DateTime<Utc> = answer["subtractCredits"]["entry"]["createdAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        loop {
            match probe.next().await {
                Some(Ok(Message::Text(text))) if text.contains("\"next\"") => break,
                Some(Ok(_)) => {}
                other => panic!("probe lost: {other:?}"),
            }
        }
        latencies_ms.push((Utc::now() - committed).num_microseconds().unwrap() as f64 / 1000.0);
    }
    latencies_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    latencies_ms
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let client = reqwest::Client::new();
    let add = "mutation($u: ID!, $a: Credits!) { addCredits(input: {endUserId: $u, amount: $a}) { balance { available } } }";

    // 1. An end user nobody subscribes to: the comparator for the debit rate.
    let quiet_user = uuid::Uuid::new_v4().to_string();
    graphql(
        &client,
        &args,
        add,
        json!({ "u": quiet_user, "a": 1_000_000_000 }),
    )
    .await;

    // 2. N idle subscriptions, each on its own end user.
    let rss_before = rss_kib(args.pid);
    let idle = args.subscriptions.saturating_sub(args.hot_subscribers);
    let opened = Instant::now();
    let mut sockets: Vec<Socket> = stream::iter(0..idle)
        .map(|_| async { open_subscription(&args, &uuid::Uuid::new_v4().to_string()).await })
        .buffer_unordered(64)
        .collect()
        .await;
    let open_seconds = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(args.pid);

    // 3. Hot subscribers on the user being debited; latency from commit to client.
    let hot_user = uuid::Uuid::new_v4().to_string();
    graphql(
        &client,
        &args,
        add,
        json!({ "u": hot_user, "a": 1_000_000_000 }),
    )
    .await;
    let mut hot = Vec::new();
    for _ in 0..args.hot_subscribers.max(1) {
        hot.push(open_subscription(&args, &hot_user).await);
    }
    // Back to back: each debit right after the previous push (Tally paces these).
    let back_to_back_ms = push_latencies_ms(&client, &args, &mut hot[0], &hot_user, None).await;
    // Apart: each debit after a quiet spell longer than the pacing interval.
    let apart_ms = push_latencies_ms(
        &client,
        &args,
        &mut hot[0],
        &hot_user,
        Some(Duration::from_millis(args.gap_ms)),
    )
    .await;

    // 4. Debits on the quiet user and on the watched one (its subscribers receiving each
    // change), in alternating rounds so that the machine's drift hits both alike.
    let drains: Vec<_> = hot
        .into_iter()
        .map(|mut socket| tokio::spawn(async move { while socket.next().await.is_some() {} }))
        .collect();
    let mut rates_without = Vec::new();
    let mut rates_with = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..args.rounds {
        let without = debit_rate(&client, &args, &quiet_user).await;
        let with = debit_rate(&client, &args, &hot_user).await;
        rates_without.push(without);
        rates_with.push(with);
        ratios.push(with / without);
    }
    for rates in [&mut rates_without, &mut rates_with, &mut ratios] {
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }

    println!(
        "subscriptions opened:            {} idle + {} on the debited user ({open_seconds:.1} s to open)",
        sockets.len(),
        args.hot_subscribers
    );
    match (rss_before, rss_after) {
        (Some(before), Some(after)) => println!(
            "server RSS:                      {before} KiB before, {after} KiB with {} idle subscriptions: {:.1} KiB per idle subscription",
            sockets.len(),
            (after.saturating_sub(before)) as f64 / sockets.len().max(1) as f64
        ),
        _ => println!("server RSS:                      (pass --pid to measure)"),
    }
    for (what, latencies_ms) in [
        ("back to back", &back_to_back_ms),
        (&*format!("{} ms apart", args.gap_ms), &apart_ms),
    ] {
        println!(
            "push latency commit -> client:   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} debits one at a time, {what})",
            percentile(latencies_ms, 0.50),
            percentile(latencies_ms, 0.99),
            latencies_ms.last().unwrap(),
            latencies_ms.len()
        );
    }
    println!(
        "debit rate without subscribers:  {:.0} /s median of {} rounds ({} debits each, {} concurrent)",
        percentile(&rates_without, 0.5),
        args.rounds,
        args.debits,
        args.concurrency
    );
    println!(
        "debit rate with subscribers:     {:.0} /s median, alternating with the above ({} subscribers pushed each change)",
        percentile(&rates_with, 0.5),
        args.hot_subscribers
    );
    println!(
        "with / without:                  {:.2}x median of the rounds' ratios (lowest {:.2}x, highest {:.2}x)",
        percentile(&ratios, 0.5),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    for drain in drains {
        drain.abort();
    }
    sockets.clear();
}
