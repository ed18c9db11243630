//! The provider waterfall of leadflow, with no DataFusion inside.
//!
//! [`Waterfall::find`] asks phone providers in priority order for one lead
//! until one returns a valid number, under hourly rate limits
//! ([`RateLimiter`]), a lookup cache ([`LookupCache`]), circuit breakers
//! ([`CircuitBreaker`]) and a budget ([`Budget`]), with retries and a
//! per-lead deadline, and records every call as an [`Attempt`]. Providers are
//! HTTP adapters for the contracts of DESIGN.md ([`providers`]) or declared
//! in config. Time comes from a [`Clock`], so tests move it.

pub mod breaker;
pub mod budget;
pub mod cache;
pub mod clock;
pub mod config;
mod error;
pub mod provider;
pub mod providers;
pub mod rate_limit;
mod template;
mod waterfall;

pub use breaker::{CircuitBreaker, InMemoryCircuitBreaker};
pub use budget::{Budget, InMemoryBudget};
pub use cache::{CacheKey, CachedLookup, InMemoryLookupCache, LookupCache};
pub use clock::{Clock, ManualClock, Micros, SystemClock};
pub use config::{ProviderConfig, ProviderKind, WaterfallConfig};
pub use error::{Error, Result};
pub use leadflow_sandbox::{self as sandbox, Sandbox, SandboxConfig};
pub use provider::{Answer, LeadQuery, LineType, LineTypeProvider, Provider, Secret};
pub use rate_limit::{InMemoryRateLimiter, RateLimiter};
pub use waterfall::{Attempt, LineTypeLookup, Lookup, LookupStatus, Outcome, Services, Waterfall};
