//! The `tally` command: serve (the default), migrate, manage keys, print the schema.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use tally::auth::api_keys;
use tally::{Application, Config, db};

/// Every request makes many small allocations (JSON, GraphQL documents, SQL values); under load
/// glibc's malloc and free took about 13% of the server's CPU, which mimalloc is built to cut.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tally", version, about = "Self-hosted prepaid-credits ledger")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage secret API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the GraphQL schema (SDL); `schema.graphql` is its output.
    Schema,
    /// Replay the ledger against the stored grants, holds and accounts; list every difference.
    /// Exits 1 when there is any.
    Verify,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (shown once).
    Create {
        #[arg(long)]
        name: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke { id: Uuid },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Schema) = cli.command {
        print!("{}", tally::graphql::sdl());
        return ExitCode::SUCCESS;
    }
    // A missing .env is normal; a malformed one is reported.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("error: .env: {error}");
        return ExitCode::from(2);
    }
    init_tracing();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("TALLY_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            tracing::info!(
                port = app.port(),
                "Tally is listening; GraphiQL at /graphql"
            );
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            let db = db::connect(&config.database_url, 1).await?;
            db::migrate(&db).await?;
            println!("migrations applied");
        }
        Command::Keys { command } => {
            let db = db::connect(&config.database_url, 1).await?;
            db::migrate(&db).await?;
            match command {
                KeysCommand::Create { name } => {
                    let (key, summary) = api_keys::create(&db, &name).await?;
                    println!("{key}");
                    eprintln!(
                        "created key {} ({}); store it now, it is not shown again",
                        summary.id, summary.name
                    );
                }
                KeysCommand::List => {
                    println!(
                        "{:<36}  {:<13}  {:<25}  {:<25}  name",
                        "id", "prefix", "created", "revoked"
                    );
                    for key in api_keys::list(&db).await? {
                        println!(
                            "{:<36}  {:<13}  {:<25}  {:<25}  {}",
                            key.id,
                            key.prefix,
                            key.created_at.to_rfc3339(),
                            key.revoked_at
                                .map(|at| at.to_rfc3339())
                                .unwrap_or_else(|| "-".into()),
                            key.name
                        );
                    }
                }
                KeysCommand::Revoke { id } => {
                    let key = api_keys::revoke(&db, id).await?;
                    println!("revoked {} ({})", key.id, key.name);
                }
            }
        }
        Command::Verify => {
            let db = db::connect(&config.database_url, 1).await?;
            db::migrate(&db).await?;
            let problems = tally::ledger::verify::verify(&db).await?;
            if problems.is_empty() {
                println!("ledger verified: no differences");
            } else {
                for problem in &problems {
                    println!("{problem}");
                }
                anyhow::bail!(
                    "{} difference(s) between the ledger and the stored state",
                    problems.len()
                );
            }
        }
        Command::Schema => unreachable!("handled before the runtime starts"),
    }
    Ok(())
}
