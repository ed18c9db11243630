//! The provider waterfall of leadflow, with no DataFusion inside.
//!
//! [`Waterfall::find`] asks phone providers in priority order for one lead
//! until one returns a valid number, under hourly rate limits
//! ([`RateLimiter`]), a lookup cache ([`LookupCache`]), circuit breakers
//! ([`CircuitBreaker`]) and a budget ([`Budget`]), with retries and a
//! per-lead deadline, and records every call as an [`Attempt`]. Providers are
//! HTTP adapters for the contracts of DESIGN.md ([`providers`]) or declared
//! in config. Time comes from a [`Clock`], so tests move it. Every call and
//! skip is reported to a [`UsageLedger`] the moment it ends.
//!
//! Where a provider lives is the assembling process's business: it hands
//! [`Waterfall::builder`] the config, the clients and the credentials.

pub mod adaptive;
pub mod breaker;
pub mod budget;
mod build;
pub mod cache;
mod call;
pub mod clock;
pub mod config;
mod error;
mod lookup;
pub mod provider;
pub mod providers;
pub mod rate_limit;
mod template;
mod usage;
mod waterfall;

pub use adaptive::{Evidence, EvidenceStore, ExchangeFailed, Learned, Seeding, Tally};
pub use breaker::{CircuitBreaker, InMemoryCircuitBreaker};
pub use budget::{Budget, InMemoryBudget, Org, Reservation};
pub use build::{Secrets, WaterfallBuilder, client_builder};
pub use cache::{CacheKey, Claim, InMemoryLookupCache, LookupCache, ProviderAnswer};
pub use clock::{Clock, ManualClock, Micros, SystemClock};
pub use config::{ProviderConfig, ProviderKind, WaterfallConfig};
pub use error::{Error, Result};
pub use lookup::{Attempt, LineTypeLookup, LineTypeStatus, Lookup, LookupStatus, Outcome, Policy};
pub use provider::{Answer, LeadQuery, LineType, LineTypeProvider, OwnPhone, Provider, Secret};
pub use rate_limit::{InMemoryRateLimiter, RateLimiter};
pub use usage::{LeadRef, ProviderUsage, Sending, UsageJournal, UsageLedger};
pub use waterfall::{Estimate, ExplainedProvider, Explanation, Services, Waterfall};
