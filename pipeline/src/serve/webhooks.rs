//! A job's end, posted to its `webhook_url` and signed per Standard
//! Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "id.timestamp.body">`) with its key's secret;
//! retried with backoff, never following a redirect, and never sent to a
//! loopback, private or link-local address unless `[api]
//! allow_private_webhooks` says so (checked when the job is made and again,
//! on the address it connects to, when it is sent).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use crate::batch::webhook::Webhook;
use crate::config::ApiKeyConfig;
use crate::error::{Error, Result};

/// The keys' webhook secrets, and whether private targets are allowed.
pub(super) struct Hooks {
    secrets: HashMap<String, Vec<u8>>,
    allow_private: bool,
}

impl Hooks {
    /// Reads each key's secret from its `webhook_secret_env`: a key that
    /// names a variable that is not set is an error now, not at a job's end.
    pub(super) fn new(keys: &[ApiKeyConfig], allow_private: bool) -> Result<Self> {
        let mut secrets = HashMap::new();
        for key in keys {
            let Some(var) = &key.webhook_secret_env else {
                continue;
            };
            let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
            let value = value.ok_or_else(|| {
                Error::Usage(format!(
                    "[[api.keys]] name = {:?}: webhook_secret_env = {var:?}, which is not set",
                    key.name
                ))
            })?;
            secrets.insert(
                key.name.clone(),
                secret_bytes(value.trim()).map_err(|e| {
                    Error::Usage(format!(
                        "{var} (the webhook secret of key {:?}): {e}",
                        key.name
                    ))
                })?,
            );
        }
        Ok(Self {
            secrets,
            allow_private,
        })
    }

    /// Checks a job's `webhook_url` for `key` before the job is made.
    pub(super) async fn check(&self, key: &str, url: &str) -> std::result::Result<(), String> {
        if !self.secrets.contains_key(key) {
            return Err(format!(
                "this key has no webhook secret to sign with: set [[api.keys]] webhook_secret_env for {key:?}"
            ));
        }
        self.target(url).await.map(|_| ())
    }

    /// The address `url` is sent to: its host's first address, when
    /// every address it resolves to may be sent to.
    async fn target(&self, url: &str) -> std::result::Result<SocketAddr, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let host = parsed.host_str().ok_or("no host")?;
        let port = parsed.port_or_known_default().ok_or("no port")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .collect();
        let first = *addrs
            .first()
            .ok_or_else(|| format!("{host} has no address"))?;
        if !self.allow_private
            && let Some(private) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(format!(
                "{host} is {}, a loopback, private or link-local address: webhooks go to public \
                 addresses ([api] allow_private_webhooks = true allows it)",
                private.ip()
            ));
        }
        Ok(first)
    }

    /// Posts `event` about `data` to `url`, signed with `key`'s secret:
    /// true when the receiver took it.
    pub(super) async fn send(
        &self,
        key: &str,
        url: &str,
        message_id: &str,
        event: &str,
        data: &impl Serialize,
    ) -> bool {
        let Some(secret) = self.secrets.get(key) else {
            tracing::warn!(key, "a job's webhook has no secret to sign with; not sent");
            return false;
        };
        let pinned = match self.target(url).await {
            Ok(addr) => addr,
            Err(e) => {
                tracing::warn!(key, error = e, "a job's webhook is not sent");
                return false;
            }
        };
        let now = chrono::Utc::now();
        #[derive(Serialize)]
        struct Payload<'a, T> {
            r#type: &'a str,
            timestamp: String,
            data: &'a T,
        }
        let body = serde_json::to_string(&Payload {
            r#type: event,
            timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data,
        })
        .expect("JSON serializes");
        let timestamp = now.timestamp();
        let mut webhook = Webhook::new(url.to_string());
        webhook.attempts = 5;
        webhook.pinned = Some(pinned);
        webhook.headers = vec![
            ("webhook-id".into(), message_id.into()),
            ("webhook-timestamp".into(), timestamp.to_string()),
            (
                "webhook-signature".into(),
                sign(secret, message_id, timestamp, body.as_bytes()),
            ),
        ];
        webhook.send_body(body).await
    }
}

/// A Standard Webhooks secret as bytes: `whsec_` and base64, or else the
/// text itself.
fn secret_bytes(secret: &str) -> std::result::Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => BASE64
            .decode(encoded)
            .map_err(|e| format!("after `whsec_` comes base64: {e}")),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(format!("{id}.{timestamp}.").as_bytes());
    context.update(body);
    format!("v1,{}", BASE64.encode(context.sign().as_ref()))
}

/// Whether `ip` is on the public internet: not loopback, private,
/// link-local, shared (CGNAT), unspecified, multicast or documentation.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_standard_webhooks_v1() {
        // The Standard Webhooks reference example.
        let secret = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
