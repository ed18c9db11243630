//! The HTTP adapters: one file per contract of DESIGN.md, plus the provider
//! declared entirely in config.

mod astra;
mod http;
mod nimbus;
mod orion;
mod twilio;

pub use astra::Astra;
pub use http::DeclaredProvider;
pub use nimbus::Nimbus;
pub use orion::Orion;
pub use twilio::Twilio;

use reqwest::{Client, RequestBuilder};

use crate::provider::Secret;

/// Where a phone finder of a fixed contract is asked, and with which key:
/// the part Orion, Astra and Nimbus share.
#[derive(Debug)]
pub(crate) struct Endpoint {
    url: String,
    key: Secret,
}

impl Endpoint {
    pub(crate) fn new(base_url: &str, path: &str, key: Secret) -> Self {
        Self {
            url: join(base_url, path),
            key,
        }
    }

    /// A `GET` of the endpoint.
    pub(crate) fn get(&self, http: &Client) -> RequestBuilder {
        http.get(&self.url)
    }

    /// A `POST` of `body` as JSON to the endpoint.
    pub(crate) fn post_json(&self, http: &Client, body: &serde_json::Value) -> RequestBuilder {
        http.post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    pub(crate) fn key(&self) -> &str {
        self.key.expose()
    }
}

/// `base_url` + `path`, with exactly one `/` between them.
pub(crate) fn join(base_url: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base_url.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}
