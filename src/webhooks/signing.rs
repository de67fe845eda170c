//! Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`), made
//! by the `standardwebhooks` crate. During a secret rotation's grace period the signature
//! header carries one `v1,` signature per secret, so receivers holding either accept it.

use base64::Engine as _;
use rand::RngCore as _;
use standardwebhooks::Webhook;

use crate::error::{Error, Result};

pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The `webhook-signature` header value: `v1,<sig>` for each secret, space-separated.
pub fn signature_header(
    secrets: &[&str],
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String> {
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let signer = Webhook::new(secret)
            .map_err(|e| Error::Internal(format!("a webhook secret is unreadable: {e}")))?;
        signatures.push(
            signer
                .sign(message_id, timestamp, body)
                .map_err(|e| Error::Internal(format!("signing a webhook: {e}")))?,
        );
    }
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_secrets_verify_during_a_rotation() {
        let (old, new) = (new_secret(), new_secret());
        let body = br#"{"type":"test"}"#;
        let now = chrono::Utc::now().timestamp();
        let header = signature_header(&[&new, &old], "evt_1", now, body).unwrap();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("webhook-id", "evt_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", header.parse().unwrap());
        assert!(Webhook::new(&old).unwrap().verify(body, &headers).is_ok());
        assert!(Webhook::new(&new).unwrap().verify(body, &headers).is_ok());
        assert!(
            Webhook::new(&new_secret())
                .unwrap()
                .verify(body, &headers)
                .is_err()
        );
    }
}
