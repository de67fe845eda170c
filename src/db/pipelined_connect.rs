//! How the PostgreSQL write lanes open their connections: through tokio-postgres, which
//! pipelines (see `ledger::pipeline::postgres`), with the settings sqlx resolved for the pool.
//!
//! The settings come from the pool's own options, so the lanes reach the same database as
//! everything else, whatever gave them: the URL, `PG*` environment variables, `~/.pgpass`. sqlx
//! writes them back as a URL (`to_url_lossy`), read here, plus the application name and the
//! startup `options`, which that URL leaves out.
//!
//! TLS follows sqlx 0.9's reading of `sslmode`, so that one URL means the same to every
//! connection Tally opens: `disable` and `allow` never (sqlx does not implement `allow`'s
//! fallback to TLS), `prefer` when the server offers it, `require` always; these accept any
//! certificate. `verify-ca` checks the certificate against the web PKI roots and `sslrootcert`,
//! and `verify-full` the host name too. `sslcert` and `sslkey` give a client certificate. A Unix
//! socket never uses TLS.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sea_orm::sqlx::ConnectOptions;
use sea_orm::sqlx::postgres::PgConnectOptions;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The lanes' `application_name` when the URL gives none.
pub const DEFAULT_APPLICATION_NAME: &str = "tally-write-lane";

/// Everything a write lane needs to open a PostgreSQL connection of its own.
#[derive(Clone)]
pub struct PipelinedOptions {
    config: tokio_postgres::Config,
    /// `None`: `sslmode=disable`.
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PipelinedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `tokio_postgres::Config`'s own `Debug` redacts the password.
        f.debug_struct("PipelinedOptions")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PipelinedOptions {
    /// The pool's settings as the lanes' (see the module's head); an error names what could not
    /// be used (an unreadable certificate file, say).
    pub fn from_pool(pool: &PgConnectOptions) -> Result<Self, String> {
        let url = pool.to_url_lossy();
        let mut config = tokio_postgres::Config::new();
        let mut mode = "prefer".to_owned();
        let (mut root_cert, mut client_cert, mut client_key) = (None, None, None);
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => mode = value.into_owned(),
                "sslrootcert" => root_cert = Some(value.into_owned()),
                "sslcert" => client_cert = Some(value.into_owned()),
                "sslkey" => client_key = Some(value.into_owned()),
                _ => {}
            }
        }
        match pool.get_socket() {
            Some(socket) => {
                // sqlx keeps the socket's directory or its full path; tokio-postgres wants the
                // directory and names the file after the port, as libpq does.
                let directory = match socket.file_name() {
                    Some(name) if name.to_string_lossy().starts_with(".s.PGSQL.") => {
                        socket.parent().unwrap_or(socket)
                    }
                    _ => socket,
                };
                config.host_path(directory);
            }
            None => {
                config.host(pool.get_host());
            }
        }
        config.port(pool.get_port()).user(pool.get_username());
        if let Some(password) = url.password() {
            let password = percent_decoded(password)?;
            config.password(password);
        }
        if let Some(database) = pool.get_database() {
            config.dbname(database);
        }
        // Named, unless the URL names every connection: operators see the lanes as such in
        // `pg_stat_activity`.
        config.application_name(
            pool.get_application_name()
                .unwrap_or(DEFAULT_APPLICATION_NAME),
        );
        if let Some(options) = pool.get_options() {
            config.options(options);
        }
        let verify = match mode.as_str() {
            "disable" | "allow" => None,
            "prefer" | "require" => Some(Verify::Nothing),
            "verify-ca" => Some(Verify::Chain),
            "verify-full" => Some(Verify::ChainAndName),
            other => return Err(format!("sslmode {other} is not one PostgreSQL knows")),
        };
        config.ssl_mode(match mode.as_str() {
            "disable" | "allow" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            _ => SslMode::Require,
        });
        config.connect_timeout(CONNECT_TIMEOUT);
        let tls = match verify {
            None => None,
            Some(verify) => {
                let roots = root_cert.as_deref().map(certificates).transpose()?;
                let identity = match (client_cert, client_key) {
                    (Some(cert), Some(key)) => Some((certificates(&cert)?, private_key(&key)?)),
                    (None, None) => None,
                    _ => return Err("sslcert and sslkey go together".into()),
                };
                Some(MakeRustlsConnect::new(client_config(
                    verify, roots, identity,
                )?))
            }
        };
        Ok(Self { config, tls })
    }

    /// Opens a connection; its I/O runs in a task of its own until the client is dropped.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(log_the_end_of(connection));
                client
            }
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(log_the_end_of(connection));
                client
            }
        };
        Ok(client)
    }
}

/// As long as a lane waits to open a connection (the pool waits as long for one of its own).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Drives a connection's I/O; a connection that ends with an error (the server went away, a
/// broken network) is logged: the lane's batch on it fails and is retried write by write.
async fn log_the_end_of(connection: impl Future<Output = Result<(), tokio_postgres::Error>>) {
    if let Err(error) = connection.await {
        tracing::warn!(%error, "a write lane's PostgreSQL connection ended");
    }
}

fn percent_decoded(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| "the database password is not UTF-8".to_owned())
}

/// What a server's certificate must prove.
#[derive(Clone, Copy)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

fn client_config(
    verify: Verify,
    roots: Option<Vec<CertificateDer<'static>>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match verify {
        Verify::Nothing => None,
        Verify::Chain | Verify::ChainAndName => {
            // The web PKI roots and the named one, as sqlx trusts.
            let mut store = RootCertStore::empty();
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            for root in roots.unwrap_or_default() {
                store
                    .add(root)
                    .map_err(|error| format!("sslrootcert: {error}"))?;
            }
            let chain = WebPkiServerVerifier::builder_with_provider(store.into(), provider.clone())
                .build()
                .map_err(|error| format!("sslrootcert: {error}"))?;
            Some(chain)
        }
    };
    let verifier = Arc::new(ServerCertificate {
        chain,
        name_too: matches!(verify, Verify::ChainAndName),
        signatures: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|error| format!("sslcert/sslkey: {error}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The certificates of a file, or of PEM text given inline (sqlx writes a file as `file: PATH`).
fn certificates(input: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let read = match input.strip_prefix("file: ") {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|error| format!("{path}: {error}")),
        None => CertificateDer::pem_slice_iter(input.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("an inline certificate: {error}")),
    }?;
    if read.is_empty() {
        return Err(format!("no certificate in {input}"));
    }
    Ok(read)
}

fn private_key(input: &str) -> Result<PrivateKeyDer<'static>, String> {
    match input.strip_prefix("file: ") {
        Some(path) => {
            PrivateKeyDer::from_pem_file(path).map_err(|error| format!("{path}: {error}"))
        }
        None => PrivateKeyDer::from_pem_slice(input.as_bytes())
            .map_err(|error| format!("an inline key: {error}")),
    }
}

/// What the server's certificate must prove, by `sslmode`. `prefer` and `require` (no `chain`):
/// nothing, as libpq and sqlx accept there. `verify-ca`: a chain to a trusted root, whatever
/// name it carries. `verify-full`: that and the host's name. The handshake's signatures are
/// checked in every mode, so the connection is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct ServerCertificate {
    chain: Option<Arc<WebPkiServerVerifier>>,
    name_too: bool,
    signatures: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // The chain is checked before the name, so a name error means the chain was good.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name_too => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.signatures)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.signatures)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> Result<PipelinedOptions, String> {
        PipelinedOptions::from_pool(&url.parse().expect("a URL sqlx reads"))
    }

    #[test]
    fn reads_what_sqlx_resolved_from_the_url() {
        let read = options(
            "postgres://ann:p%40ss%2Bword@db.example:6543/ledger?sslmode=disable&application_name=tally",
        )
        .unwrap();
        assert!(read.tls.is_none());
        let config = &read.config;
        assert_eq!(config.get_user(), Some("ann"));
        assert_eq!(config.get_password(), Some(&b"p@ss+word"[..]));
        assert_eq!(config.get_dbname(), Some("ledger"));
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_application_name(), Some("tally"));
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        let unnamed = options("postgres://u@localhost/d").unwrap();
        assert_eq!(
            unnamed.config.get_application_name(),
            Some(DEFAULT_APPLICATION_NAME)
        );
    }

    #[test]
    fn every_sslmode_sqlx_knows_has_a_meaning_here() {
        let allow = options("postgres://u@localhost/d?sslmode=allow").unwrap();
        assert_eq!(allow.config.get_ssl_mode(), SslMode::Disable, "as sqlx");
        assert!(allow.tls.is_none());
        for (mode, expected) in [
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::Require),
            ("verify-full", SslMode::Require),
        ] {
            let read = options(&format!("postgres://u@localhost/d?sslmode={mode}")).unwrap();
            assert_eq!(read.config.get_ssl_mode(), expected, "{mode}");
            assert!(read.tls.is_some(), "{mode}");
        }
    }

    #[test]
    fn an_unreadable_root_certificate_is_named() {
        let error =
            options("postgres://u@localhost/d?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
                .expect_err("an error");
        assert!(error.contains("/nonexistent.pem"), "{error}");
    }

    #[test]
    fn a_unix_socket_is_a_directory() {
        let read = options("postgres://u@%2Fvar%2Frun%2Fpostgresql/d").unwrap();
        assert_eq!(
            read.config.get_hosts(),
            &[tokio_postgres::config::Host::Unix(
                "/var/run/postgresql".into()
            )]
        );
    }
}

/// Against the PostgreSQL server of `TEST_DATABASE_URL` (skipped without one), on this machine
/// at 127.0.0.1, whose certificate no public root signs and which does not name 127.0.0.1: each
/// mode checks what it says and no more.
#[cfg(test)]
mod server_tests {
    use super::*;

    /// Opens a lane's connection to that server with `parameters` added to its URL, and runs a
    /// query on it.
    async fn connect(base: &str, parameters: &str) -> Result<(), String> {
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}{parameters}");
        let pool: PgConnectOptions = url.parse().map_err(|e| format!("{e}"))?;
        let options = PipelinedOptions::from_pool(&pool)?;
        let client = options.connect().await.map_err(|e| format!("{e:?}"))?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    #[tokio::test]
    async fn a_certificate_is_checked_as_far_as_the_mode_says() {
        let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("skipped: set TEST_DATABASE_URL");
            return;
        };
        connect(&base, "sslmode=disable").await.unwrap();
        connect(&base, "sslmode=require").await.unwrap();
        for mode in ["verify-ca", "verify-full"] {
            let error = connect(&base, &format!("sslmode={mode}"))
                .await
                .expect_err(mode);
            assert!(error.contains("UnknownIssuer"), "{mode}: {error}");
        }
        // The server's own (self-signed) certificate as the root.
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let row = client.query_one("SHOW ssl_cert_file", &[]).await.unwrap();
        let root: String = row.get(0);
        let trusted = format!("sslrootcert={root}");
        connect(&base, &format!("sslmode=verify-ca&{trusted}"))
            .await
            .expect("verify-ca: the chain, not the name");
        let error = connect(&base, &format!("sslmode=verify-full&{trusted}"))
            .await
            .expect_err("verify-full: 127.0.0.1 is not the certificate's name");
        assert!(error.contains("NotValidForName"), "{error}");
    }
}
