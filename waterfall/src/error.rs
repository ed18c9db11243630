//! Errors of the waterfall crate. A provider's failure is not among them: it
//! is an outcome recorded in the lead's row. These stop a run from starting.

/// What went wrong, and whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is wrong (the user's to fix; retrying will not help).
    #[error("config: {0}")]
    Config(String),
    /// A provider's credentials are missing from the environment (the user's to fix).
    #[error("provider `{provider}`: environment variable {var} is not set")]
    MissingSecret { provider: String, var: String },
    /// The HTTP client could not start (the machine's; a retry may help).
    #[error("starting {what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether the user must change something (the config, the
    /// environment) before the same start can succeed.
    pub fn is_users(&self) -> bool {
        matches!(self, Error::Config(_) | Error::MissingSecret { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
