//! Real `tally serve` processes, for tests that need more than one process or kill one.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ADMIN_KEY;

/// A running `tally serve`; killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    pub address: String,
}

impl Process {
    /// Starts `tally serve` on a free port against `database_url` and waits until it is ready.
    pub async fn start(database_url: &str) -> Self {
        Self::start_with_env(database_url, &[]).await
    }

    /// `start`, with more environment variables (settings) for the process.
    pub async fn start_with_env(database_url: &str, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("TALLY_LISTEN", format!("127.0.0.1:{port}"))
            .env("TALLY_ADMIN_API_KEY", ADMIN_KEY)
            .env("RUST_LOG", "warn")
            .current_dir(std::env::temp_dir())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("tally starts");
        let process = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let ready = format!("{}/readyz", process.address);
        super::eventually(Duration::from_secs(10), "tally to become ready", || async {
            let answer = client.get(&ready).send().await;
            answer.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await;
        process
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
