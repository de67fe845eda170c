//! Load generator for `bench/ledger.sh` (a benchmark, not a test).
//!
//! A fixed number of HTTP/1.1 keep-alive connections, each sending one request at a time, for a
//! fixed duration, against a running Tally (or the `bare_balance` comparator, which answers the
//! same balance request). It shares the machine with the server it measures, so it is kept lean:
//! hyper's connection API directly, one thread by default, latencies kept in plain vectors.
//!
//! ```sh
//! bench_load --url http://127.0.0.1:18080/graphql --key "$KEY" --mode seed --users 10000
//! bench_load --url http://127.0.0.1:18080/graphql --key "$KEY" --mode debit --users 10000 --seconds 10
//! bench_load --url http://127.0.0.1:18080/graphql --key "$KEY" --mode debit --hot
//! bench_load --url http://127.0.0.1:18080/graphql --key "$KEY" --mode balance --users 10000
//! ```
//!
//! - `seed`: gives each of `--users` end users two grants of 10^9 credits through `addCredits`,
//!   one valid 7 days and one 365 days (the shape of the database floor's accounts);
//! - `debit`: `subtractCredits` of 3 credits from a random seeded end user, or from the first one
//!   with `--hot`; `--idempotency-keys` sends a fresh key with each;
//! - `balance`: the `balance` query of a random seeded end user.
//!
//! Prints one line starting `result` with key=value figures (rate per second, p50/p99 in
//! milliseconds, ok and error counts, and the CPU used meanwhile by this process, by the server
//! named with `--server-pid` and by the whole machine, in % of one core), and the first error's
//! answer on stderr. Exits 1 when nothing succeeded (the benchmark itself is broken) or when
//! seeding left end users without their grants.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};

/// Tally's own request timeout: a request still unanswered after it is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Credits in each seeded grant: enough that no benchmark runs an end user dry.
const GRANT_CREDITS: u64 = 1_000_000_000;
/// Attempts per seeding request before the end user counts as not seeded.
const SEED_ATTEMPTS: u32 = 3;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Seed,
    Debit,
    Balance,
}

struct Args {
    url: Uri,
    key: String,
    mode: Mode,
    clients: usize,
    seconds: f64,
    warmup: f64,
    users: u64,
    hot: bool,
    idempotency_keys: bool,
    threads: usize,
    server_pid: Option<u32>,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: Uri::from_static("http://127.0.0.1:8080/graphql"),
        key: String::new(),
        mode: Mode::Debit,
        clients: 32,
        seconds: 10.0,
        warmup: 1.0,
        users: 10_000,
        hot: false,
        idempotency_keys: false,
        threads: 1,
        server_pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--hot" {
            args.hot = true;
            continue;
        }
        if flag == "--idempotency-keys" {
            args.idempotency_keys = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = parse(&flag, &value),
            "--key" => args.key = value,
            "--mode" => {
                args.mode = match value.as_str() {
                    "seed" => Mode::Seed,
                    "debit" => Mode::Debit,
                    "balance" => Mode::Balance,
                    _ => panic!("--mode is seed, debit or balance"),
                }
            }
            "--clients" => args.clients = parse(&flag, &value),
            "--seconds" => args.seconds = parse(&flag, &value),
            "--warmup" => args.warmup = parse(&flag, &value),
            "--users" => args.users = parse(&flag, &value),
            "--threads" => args.threads = parse(&flag, &value),
            "--server-pid" => args.server_pid = Some(parse(&flag, &value)),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!args.key.is_empty(), "--key is required");
    assert!(args.clients > 0 && args.users > 0 && args.threads > 0);
    args
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("{flag}: cannot read {value:?}"))
}

/// The seeded end users are numbered: the same numbers name the same users in every mode.
fn end_user(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

const ADD: &str = "mutation($u: ID!, $a: Credits!, $d: Int!) { addCredits(input: {endUserId: $u, amount: $a, validityDays: $d}) { grant { id } } }";
const SUBTRACT: &str = "mutation($u: ID!) { subtractCredits(input: {endUserId: $u, amount: 3}) { entry { id balanceAfter } } }";
const SUBTRACT_KEYED: &str = "mutation($u: ID!, $k: String!) { subtractCredits(input: {endUserId: $u, amount: 3, idempotencyKey: $k}) { entry { id balanceAfter } } }";
const BALANCE: &str = "query($u: ID!) { balance(endUserId: $u) { available held nextExpiry grants { id remaining expiresAt } } }";

/// What one connection did.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

struct Shared {
    args: Args,
    addr: SocketAddr,
    authority: String,
    bearer: String,
    /// Seeding: the next grant to create, of `2 × users`.
    next_seed: AtomicU64,
    /// Requests completing in [measure_from, end) count; none start at or after `end`.
    measure_from: Instant,
    end: Instant,
    /// A per-run prefix so that idempotency keys never collide with an earlier run's.
    run_id: u64,
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    // One small request per write: without NODELAY, Nagle would add its delay to the figures.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer. `Err` carries what to report and whether the
/// connection must be replaced.
async fn send(
    shared: &Shared,
    sender: &mut SendRequest<Full<Bytes>>,
    body: Bytes,
) -> Result<(), (String, bool)> {
    let request = Request::post(shared.args.url.path())
        .header(hyper::header::HOST, &shared.authority)
        .header(hyper::header::AUTHORIZATION, &shared.bearer)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("request");
    let exchange = async {
        sender.ready().await.map_err(|e| (e.to_string(), true))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| (e.to_string(), true))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| (e.to_string(), true))?
            .to_bytes();
        // GraphQL answers its errors with 200 and an `errors` member.
        if !status.is_success() || body.windows(8).any(|w| w == b"\"errors\"") {
            let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
            return Err((format!("HTTP {status}: {text}"), false));
        }
        Ok(())
    };
    match timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err((format!("no answer within {REQUEST_TIMEOUT:?}"), true)),
    }
}

/// A small xorshift: picking users must not cost more than the request does.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Builds Tally releases from before application-chosen end-user ids declared them `UUID!`:
/// `BENCH_END_USER_ID_TYPE=UUID` loads such a build (for before/after figures); unset, `ID!`.
static END_USER_ID_TYPE: std::sync::LazyLock<Option<String>> = std::sync::LazyLock::new(|| {
    std::env::var("BENCH_END_USER_ID_TYPE")
        .ok()
        .filter(|name| name != "ID")
});

fn declared_ids(body: String) -> Bytes {
    match END_USER_ID_TYPE.as_deref() {
        Some(name) => Bytes::from(body.replace("$u: ID!", &format!("$u: {name}!"))),
        None => Bytes::from(body),
    }
}

/// The next request body, or `None` when this connection is done.
fn next_body(shared: &Shared, rng: &mut Rng, sent: &mut u64, connection: usize) -> Option<Bytes> {
    let args = &shared.args;
    if args.mode == Mode::Seed {
        // All the 7-day grants first, then the 365-day ones: with more users than clients, the
        // two grants of one user are never in flight together, and the short one is the older,
        // as in the floor.
        let item = shared.next_seed.fetch_add(1, Ordering::Relaxed);
        if item >= 2 * args.users {
            return None;
        }
        let days = if item < args.users { 7 } else { 365 };
        let user = end_user(item % args.users);
        return Some(declared_ids(format!(
            r#"{{"query":"{ADD}","variables":{{"u":"{user}","a":{GRANT_CREDITS},"d":{days}}}}}"#
        )));
    }
    if Instant::now() >= shared.end {
        return None;
    }
    let user = end_user(if args.hot { 0 } else { rng.below(args.users) });
    *sent += 1;
    Some(declared_ids(match args.mode {
        Mode::Debit if args.idempotency_keys => format!(
            r#"{{"query":"{SUBTRACT_KEYED}","variables":{{"u":"{user}","k":"bench-{:x}-{connection}-{sent}"}}}}"#,
            shared.run_id
        ),
        Mode::Debit => format!(r#"{{"query":"{SUBTRACT}","variables":{{"u":"{user}"}}}}"#),
        _ => format!(r#"{{"query":"{BALANCE}","variables":{{"u":"{user}"}}}}"#),
    }))
}

async fn connection_loop(shared: Arc<Shared>, connection: usize) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((connection as u64 + 1) << 32));
    let mut sent = 0;
    let mut sender = None;
    while let Some(body) = next_body(&shared, &mut rng, &mut sent, connection) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut refused = String::new();
            if sender.is_none() {
                match connect(shared.addr).await {
                    Ok(s) => sender = Some(s),
                    Err(e) => {
                        // A pause, so that a server gone away is not hammered until the end.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        refused = format!("connect: {e}");
                    }
                }
            }
            let started = Instant::now();
            let outcome = match sender.as_mut() {
                Some(s) => send(&shared, s, body.clone()).await,
                None => Err((refused, true)),
            };
            let done = Instant::now();
            let counted = shared.args.mode == Mode::Seed
                || (done >= shared.measure_from && done < shared.end);
            match outcome {
                Ok(()) => {
                    if counted {
                        let us = (done - started).as_micros().min(u32::MAX as u128) as u32;
                        tally.latencies_us.push(us);
                    }
                    break;
                }
                Err((what, broken)) => {
                    if broken {
                        sender = None;
                    }
                    if counted {
                        tally.error(what);
                    }
                    // Only seeding retries: elsewhere an error is a figure to report.
                    if shared.args.mode != Mode::Seed || attempts >= SEED_ATTEMPTS {
                        break;
                    }
                }
            }
        }
    }
    tally
}

/// CPU time in clock ticks (1/100 s on Linux) of a process, from /proc.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields; the state (3rd) is first after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Busy clock ticks of the whole machine (every core; idle and I/O wait excluded).
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    Some(ticks.iter().take(8).sum::<u64>() - ticks.get(3)? - ticks.get(4)?)
}

struct CpuSample {
    own: Option<u64>,
    server: Option<u64>,
    machine: Option<u64>,
}

fn sample_cpu(server_pid: Option<u32>) -> CpuSample {
    CpuSample {
        own: process_ticks("self"),
        server: server_pid.and_then(|pid| process_ticks(&pid.to_string())),
        machine: machine_busy_ticks(),
    }
}

/// `name=N%` of one core over `seconds`, or nothing when /proc could not tell.
fn cpu_share(name: &str, before: Option<u64>, after: Option<u64>, seconds: f64) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!(" {name}={:.0}%", (a - b) as f64 / seconds),
        _ => String::new(),
    }
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

async fn run(args: Args) -> bool {
    let addr = format!(
        "{}:{}",
        args.url.host().expect("--url needs a host"),
        args.url.port_u16().unwrap_or(80)
    )
    .parse()
    .expect("--url: give the host as an IP address (no name lookups in a benchmark)");
    let authority = args.url.authority().expect("--url").to_string();
    let bearer = format!("Bearer {}", args.key);
    let start = Instant::now();
    let (measure_from, end) = if args.mode == Mode::Seed {
        (start, start + Duration::from_secs(86_400))
    } else {
        let from = start + Duration::from_secs_f64(args.warmup);
        (from, from + Duration::from_secs_f64(args.seconds))
    };
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let shared = Arc::new(Shared {
        args,
        addr,
        authority,
        bearer,
        next_seed: AtomicU64::new(0),
        measure_from,
        end,
        run_id,
    });
    let args = &shared.args;

    // The CPU meter samples at the edges of the measured window, beside the connections.
    let server_pid = args.server_pid;
    let meter = tokio::spawn(async move {
        sleep_until(measure_from).await;
        let before = sample_cpu(server_pid);
        sleep_until(end).await;
        (before, sample_cpu(server_pid))
    });
    let connections: Vec<_> = (0..args.clients)
        .map(|c| tokio::spawn(connection_loop(shared.clone(), c)))
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for connection in connections {
        let tally = connection.await.expect("connection task");
        latencies.extend(tally.latencies_us);
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    latencies.sort_unstable();
    let ok = latencies.len() as u64;

    let mode = match args.mode {
        Mode::Seed => "seed",
        Mode::Debit if args.hot => "debit-hot",
        Mode::Debit => "debit-spread",
        Mode::Balance => "balance",
    };
    let (seconds, cpu) = if args.mode == Mode::Seed {
        meter.abort();
        (start.elapsed().as_secs_f64(), String::new())
    } else {
        let (before, after) = meter.await.expect("meter");
        let s = args.seconds;
        let cpu = cpu_share("cpu_loadgen", before.own, after.own, s)
            + &cpu_share("cpu_server", before.server, after.server, s)
            + &cpu_share("cpu_machine", before.machine, after.machine, s);
        (s, cpu)
    };
    println!(
        "result mode={mode} clients={} users={} seconds={seconds:.1} ok={ok} errors={errors} rate={:.0} p50_ms={:.2} p99_ms={:.2}{cpu}",
        args.clients,
        if args.hot { 1 } else { args.users },
        ok as f64 / seconds,
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99),
    );
    if let Some(error) = first_error {
        eprintln!("first error ({mode}): {error}");
    }
    ok > 0 && (args.mode != Mode::Seed || ok == 2 * args.users)
}

fn main() {
    let args = parse_args();
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        builder
    }
    .enable_all()
    .build()
    .expect("runtime");
    if !runtime.block_on(run(args)) {
        std::process::exit(1);
    }
}
