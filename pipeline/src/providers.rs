//! Assembling a process's providers: the waterfall over the config's
//! providers, and the in-process sandbox for those whose `base_url` is
//! `sandbox`: started here, its address put in their `base_url`, reached
//! over HTTP/2 without TLS (every lookup in flight shares one connection),
//! and given a placeholder key, so no real credential is ever sent to it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use leadflow_fleet::{ConnectError, Fleet};
use leadflow_sandbox::{ProviderStats, Sandbox};
use leadflow_waterfall::config::{Order, WaterfallConfig};
use leadflow_waterfall::{
    RateLimiter, Seeding, Services, SystemClock, UsageLedger, Waterfall, client_builder,
};

use crate::config::{LeadflowConfig, is_sandboxed};
use crate::error::{Error, Result};

/// The key a sandbox provider is given in place of a real one.
const SANDBOX_KEY: &str = "sandbox-key";

/// A process's waterfall, and the sandbox that answers for some of its providers.
#[derive(Debug)]
pub struct Providers {
    pub waterfall: Arc<Waterfall>,
    /// The in-process sandbox, when the config asked for one.
    pub sandbox: Option<Sandbox>,
    /// The workers this process shares limits, cache, breakers and budget
    /// with, when `[redis] url` is set.
    pub fleet: Option<Fleet>,
    /// The providers' rate limiter (the fleet's, or this process's), which
    /// other limits may share: `leadflow serve`'s per-key limits.
    pub limiter: Arc<dyn RateLimiter>,
    scope: Scope,
}

/// What every waterfall of a process shares, to build more of them.
#[derive(Clone)]
struct Scope {
    config: WaterfallConfig,
    services: Services,
    /// The client of the sandbox's providers, when there are any.
    h2c: Option<reqwest::Client>,
    sandboxed: Arc<HashSet<String>>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("sandboxed", &self.sandboxed)
            .finish_non_exhaustive()
    }
}

impl Scope {
    fn waterfall(&self, ledger: UsageLedger) -> Result<Arc<Waterfall>> {
        let mut builder = Waterfall::builder(self.config.clone())
            .ledger(ledger)
            .services(self.services.clone());
        if let Some(h2c) = &self.h2c {
            for name in self.sandboxed.iter() {
                builder = builder.client(name, h2c.clone());
            }
            let sandboxed = self.sandboxed.clone();
            builder = builder.secrets(move |provider, var| {
                if sandboxed.contains(&provider.name) {
                    Some(SANDBOX_KEY.to_string())
                } else {
                    std::env::var(var?).ok().filter(|value| !value.is_empty())
                }
            });
        }
        Ok(Arc::new(builder.build()?))
    }
}

impl Providers {
    /// Starts the providers of `config`, reporting every call and skip to `ledger`.
    pub async fn start(config: &LeadflowConfig, ledger: UsageLedger) -> Result<Self> {
        let (providers, _) = Self::start_scoped(config, ledger, Vec::new()).await?;
        Ok(providers)
    }

    /// Like [`Providers::start`], plus one more waterfall per ledger in
    /// `scoped`, all sharing the same limits, cache, breakers and budget: a
    /// stream worker owns one, so the usage it drains after a batch is that
    /// batch's, whatever the other workers are doing.
    pub async fn start_scoped(
        config: &LeadflowConfig,
        ledger: UsageLedger,
        scoped: Vec<UsageLedger>,
    ) -> Result<(Self, Vec<Arc<Waterfall>>)> {
        let sandbox = if config.uses_sandbox() {
            let sandbox = Sandbox::start_local(config.sandbox.clone())
                .await
                .map_err(|e| Error::Internal(format!("starting the provider sandbox: {e}")))?;
            tracing::info!(url = %sandbox.url(), "providers answered by the in-process sandbox");
            Some(sandbox)
        } else {
            None
        };
        // Empty only when no provider asks for the sandbox, so never used.
        let sandbox_url = |name: &str| {
            sandbox
                .as_ref()
                .map_or_else(String::new, |s| s.base_url(name))
        };
        let waterfall_config = config.waterfall(sandbox_url);
        let fleet = match &config.redis.url {
            Some(url) if !config.providers.is_empty() => Some(
                Fleet::connect(url, config.redis.clone())
                    .await
                    .map_err(|e| match e {
                        ConnectError::Config(e) => Error::Usage(e),
                        // A wrong password: Redis's words, exit 3.
                        ConnectError::Refused(e) => Error::Unavailable(e),
                    })?,
            ),
            _ => None,
        };
        let services = match &fleet {
            Some(fleet) => fleet.services(&waterfall_config, Arc::new(SystemClock)),
            None => Services::in_memory(&waterfall_config, Arc::new(SystemClock)),
        };
        if waterfall_config.order.order == Order::Adaptive
            && let Some(history) = &waterfall_config.order.history
        {
            // With a fleet, one worker adds history to the pool for all.
            let to = services.learned.seeding().await;
            if to == Seeding::Pooled {
                tracing::info!(history = %history, "the fleet's pool holds the history already: not read again");
            } else {
                let counts = crate::learn::learn_history(history, &services.learned, to).await?;
                if to == Seeding::Pool {
                    services.learned.seeded().await;
                }
                if counts.calls == 0 {
                    tracing::warn!(
                        history = %history,
                        "[waterfall] history holds no answered provider calls: the adaptive order starts from its priors"
                    );
                }
                tracing::info!(
                    history = %history,
                    calls = counts.calls,
                    hits = counts.hits,
                    groups = counts.groups,
                    pooled = to == Seeding::Pool,
                    "the adaptive order learned from history"
                );
            }
        }
        let sandboxed: HashSet<String> = config
            .providers
            .iter()
            .filter(|p| sandbox.is_some() && is_sandboxed(p))
            .map(|p| p.name.clone())
            .collect();
        let h2c = if sandboxed.is_empty() {
            None
        } else {
            Some(
                client_builder()
                    .http2_prior_knowledge()
                    .build()
                    .map_err(|e| {
                        Error::Internal(format!("building the sandbox's HTTP client: {e}"))
                    })?,
            )
        };
        let scope = Scope {
            config: waterfall_config,
            services: services.clone(),
            h2c,
            sandboxed: Arc::new(sandboxed),
        };
        let waterfall = scope.waterfall(ledger)?;
        let scoped = scoped
            .into_iter()
            .map(|ledger| scope.waterfall(ledger))
            .collect::<Result<Vec<_>>>()?;
        Ok((
            Self {
                waterfall,
                sandbox,
                fleet,
                limiter: services.limiter.clone(),
                scope,
            },
            scoped,
        ))
    }

    /// One more waterfall over the same providers, limits, cache, breakers
    /// and budget, reporting to `ledger`: a job `leadflow serve` runs.
    pub fn scoped(&self, ledger: UsageLedger) -> Result<Arc<Waterfall>> {
        self.scope.waterfall(ledger)
    }

    /// What the sandbox served, by provider, when there is one.
    pub fn sandbox_stats(&self) -> Option<BTreeMap<String, ProviderStats>> {
        self.sandbox.as_ref().map(Sandbox::stats)
    }
}
