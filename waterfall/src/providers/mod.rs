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

/// `base_url` + `path`, with exactly one `/` between them.
pub(crate) fn join(base_url: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base_url.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}
