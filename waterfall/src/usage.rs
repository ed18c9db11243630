//! The usage ledger: every provider call and skip, handed over the moment it
//! ends, to whoever owns the run (its `provider_usage` writer, metrics, the
//! stream's exactly-once output). What is billed is recorded by the code that
//! paid, so `provider_usage` does not depend on what a query selects.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::lookup::Attempt;

/// Whose lookup an attempt was made for: written beside it on every usage
/// row. Never sent to a provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LeadRef {
    pub lead_id: Option<Arc<str>>,
    pub organization_id: Option<Arc<str>>,
}

/// One `provider_usage` row, as the waterfall reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUsage {
    /// The lead it was for; `None` for a line-type lookup of a number.
    pub lead: LeadRef,
    pub attempt: Attempt,
}

/// Where the waterfall reports usage. Cloning shares the ledger; a ledger
/// from [`UsageLedger::discard`] (the default) drops what it is given, for
/// ad-hoc queries that call no provider.
#[derive(Debug, Clone, Default)]
pub struct UsageLedger {
    tx: Option<mpsc::Sender<ProviderUsage>>,
}

impl UsageLedger {
    /// A ledger and the receiving end its owner drains. At most `capacity`
    /// rows wait; past that a lookup waits for the writer, so memory stays
    /// bounded and nothing is dropped.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<ProviderUsage>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx: Some(tx) }, rx)
    }

    /// A ledger that keeps nothing.
    pub fn discard() -> Self {
        Self::default()
    }

    /// Records one attempt. Returns once the owner holds it.
    pub async fn record(&self, lead: &LeadRef, attempt: &Attempt) {
        let Some(tx) = &self.tx else { return };
        let usage = ProviderUsage {
            lead: lead.clone(),
            attempt: attempt.clone(),
        };
        if tx.send(usage).await.is_err() {
            // The owner stopped draining: its run has already failed and
            // says why; a lookup still under way has nowhere to report to.
            tracing::warn!(provider = %attempt.provider, "usage ledger closed; a provider attempt was not recorded");
        }
    }
}
