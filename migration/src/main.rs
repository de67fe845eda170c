//! Stand-alone migration CLI, as sea-orm-cli generates it: `cargo run -p migration -- up`.
//! `tally migrate` does the same for operators who only have the `tally` binary.

#[cfg(feature = "cli")]
#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(migration::Migrator).await;
}

#[cfg(not(feature = "cli"))]
fn main() {
    eprintln!("built without the `cli` feature; use `tally migrate`");
    std::process::exit(2);
}
