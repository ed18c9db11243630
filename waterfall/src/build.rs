//! Building a [`Waterfall`] from its config: one slot per provider, holding
//! its adapter, its costs and the HTTP client that reaches it. Nothing here
//! knows where a provider lives: the process that assembles the waterfall
//! says which client and which credentials each one gets.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use reqwest::Client;
use tokio::sync::Semaphore;

use crate::clock::SystemClock;
use crate::config::{ProviderConfig, ProviderKind, WaterfallConfig, usd_to_micros};
use crate::error::{Error, Result};
use crate::provider::{LineTypeProvider, MIN_SECRET_CHARS, Provider, Redactor, Secret};
use crate::providers::{Astra, DeclaredProvider, Nimbus, Orion, Twilio};
use crate::usage::UsageLedger;
use crate::waterfall::{Services, Waterfall};

/// A configured provider, ready to call: `P` is its contract.
#[derive(Debug)]
pub(crate) struct Slot<P: ?Sized> {
    pub name: Arc<str>,
    pub config: ProviderConfig,
    pub cost_per_call: i64,
    pub cost_per_hit: i64,
    /// The client that reaches the provider.
    pub http: Client,
    pub contract: Box<P>,
}

impl<P: ?Sized> Slot<P> {
    fn new(config: &ProviderConfig, http: &Client, contract: Box<P>) -> Self {
        Self {
            name: Arc::from(config.name.as_str()),
            config: config.clone(),
            cost_per_call: usd_to_micros(config.cost_per_call_usd),
            cost_per_hit: usd_to_micros(config.cost_per_hit_usd),
            http: http.clone(),
            contract,
        }
    }
}

/// Where a provider's credentials come from: given the provider and the
/// environment variable its config names (`None` when it names none), the
/// value, or `None` when there is none.
pub type Secrets = dyn Fn(&ProviderConfig, Option<&str>) -> Option<String> + Send + Sync;

/// Assembles a [`Waterfall`]: by default in-memory services on the system
/// clock, keys from the process environment, one pooled HTTP client, and a
/// usage ledger that keeps nothing.
pub struct WaterfallBuilder {
    config: WaterfallConfig,
    services: Option<Services>,
    secrets: Box<Secrets>,
    clients: HashMap<String, Client>,
    ledger: UsageLedger,
}

/// A client builder with leadflow's settings: `TCP_NODELAY` (requests are
/// small and answered at once), a `User-Agent` naming leadflow, and no
/// redirects: a provider is an API that answers where it was asked, and a
/// followed redirect would carry the key's headers to wherever it points.
pub fn client_builder() -> reqwest::ClientBuilder {
    Client::builder()
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("leadflow/", env!("CARGO_PKG_VERSION")))
}

impl WaterfallBuilder {
    pub(crate) fn new(config: WaterfallConfig) -> Self {
        Self {
            config,
            services: None,
            secrets: Box::new(|_, var| std::env::var(var?).ok().filter(|value| !value.is_empty())),
            clients: HashMap::new(),
            ledger: UsageLedger::discard(),
        }
    }

    /// The limits, cache, breakers, budget and clock to consult.
    pub fn services(mut self, services: Services) -> Self {
        self.services = Some(services);
        self
    }

    /// Where keys come from instead of the process environment.
    pub fn secrets(
        mut self,
        secrets: impl Fn(&ProviderConfig, Option<&str>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.secrets = Box::new(secrets);
        self
    }

    /// The client that reaches `provider`, instead of the shared pooled one.
    pub fn client(mut self, provider: &str, client: Client) -> Self {
        self.clients.insert(provider.to_string(), client);
        self
    }

    /// Where every call and skip is reported.
    pub fn ledger(mut self, ledger: UsageLedger) -> Self {
        self.ledger = ledger;
        self
    }

    /// Checks the config, resolves every provider's credentials and builds
    /// the waterfall.
    pub fn build(self) -> Result<Waterfall> {
        let config = self.config;
        config.check()?;
        let concurrency = config.lookup.concurrency;
        let pooled = client_builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .map_err(|e| Error::Start {
                what: "the HTTP client",
                source: Box::new(e),
            })?;
        let mut finders = Vec::new();
        let mut describers = Vec::new();
        // Every credential, so that no answer echoing one writes it anywhere.
        let mut secrets = Vec::new();
        for p in &config.providers {
            for var in [&p.api_key_env, &p.api_secret_env] {
                secrets.extend(var.as_deref().and_then(|var| (self.secrets)(p, Some(var))));
            }
            if p.api_key_env.is_none() {
                secrets.extend((self.secrets)(p, None));
            }
        }
        for p in &config.providers {
            let http = self.clients.get(&p.name).unwrap_or(&pooled);
            let key = |var: &Option<String>, field: &str| -> Result<Secret> {
                match ((self.secrets)(p, var.as_deref()), var) {
                    (Some(value), _) if !value.is_empty() => {
                        short_secret(p, var, &value).map_or_else(|| Ok(Secret::new(value)), Err)
                    }
                    (_, Some(var)) => Err(Error::MissingSecret {
                        provider: p.name.clone(),
                        var: var.clone(),
                    }),
                    (_, None) => Err(Error::Config(format!(
                        "provider `{}`: {field} is required (the environment variable holding its credentials)",
                        p.name
                    ))),
                }
            };
            let url = &p.base_url;
            let finder: Box<dyn Provider> = match p.kind {
                ProviderKind::Orion => {
                    Box::new(Orion::new(url, key(&p.api_key_env, "api_key_env")?))
                }
                ProviderKind::Astra => {
                    Box::new(Astra::new(url, key(&p.api_key_env, "api_key_env")?))
                }
                ProviderKind::Nimbus => {
                    Box::new(Nimbus::new(url, key(&p.api_key_env, "api_key_env")?))
                }
                ProviderKind::Http => {
                    let contract = p.http.clone().ok_or_else(|| {
                        Error::Config(format!("provider `{}`: missing [providers.http]", p.name))
                    })?;
                    // A declared provider may need no key at all.
                    let key = match &p.api_key_env {
                        Some(_) => key(&p.api_key_env, "api_key_env")?,
                        None => match (self.secrets)(p, None).filter(|v| !v.is_empty()) {
                            Some(value) => match short_secret(p, &None, &value) {
                                Some(e) => return Err(e),
                                None => Secret::new(value),
                            },
                            None => Secret::default(),
                        },
                    };
                    Box::new(
                        DeclaredProvider::new(url, key, contract)
                            .map_err(|e| Error::Config(format!("provider `{}`: {e}", p.name)))?,
                    )
                }
                ProviderKind::Twilio => {
                    let twilio: Box<dyn LineTypeProvider> = Box::new(Twilio::new(
                        url,
                        key(&p.api_key_env, "api_key_env")?,
                        key(&p.api_secret_env, "api_secret_env")?,
                    ));
                    describers.push(Slot::new(p, http, twilio));
                    continue;
                }
            };
            finders.push(Slot::new(p, http, finder));
        }
        // Stable: equal priorities keep the config's order.
        finders.sort_by_key(|s| s.config.priority);
        describers.sort_by_key(|s| s.config.priority);
        let services = match self.services {
            Some(services) => services,
            None => Services::in_memory(&config, Arc::new(SystemClock)),
        };
        let enabled: Vec<usize> = (0..finders.len())
            .filter(|&i| finders[i].config.enabled)
            .collect();
        let finder_names: Vec<Arc<str>> =
            enabled.iter().map(|&i| finders[i].name.clone()).collect();
        let learn_index = finder_names
            .iter()
            .map(|name| {
                services.learned.index_of(name).ok_or_else(|| {
                    Error::Config(format!(
                        "provider `{name}` is not in the config the shared services were made for"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Waterfall {
            finder_names,
            enabled,
            learn_index,
            order: config.order,
            asking: Default::default(),
            finders,
            describers,
            services,
            lookup: config.lookup,
            cache: config.cache,
            in_flight: Semaphore::new(concurrency),
            jitter: AtomicU64::new(0),
            ledger: self.ledger,
            redact: Redactor::new(secrets),
        })
    }
}

/// A credential too short to be one (and to redact: every occurrence of a
/// one-letter key in an error would be masked), as the error naming where
/// it comes from.
fn short_secret(p: &ProviderConfig, var: &Option<String>, value: &str) -> Option<Error> {
    (value.chars().count() < MIN_SECRET_CHARS).then(|| {
        let from = match var {
            Some(var) => format!("environment variable {var}"),
            None => "its credential".to_string(),
        };
        Error::Config(format!(
            "provider `{}`: {from} holds {} characters; a credential has at least {MIN_SECRET_CHARS}",
            p.name,
            value.chars().count()
        ))
    })
}
