//! The usage ledger: every provider call and skip, handed over the moment it
//! ends, to whoever owns the run (its `provider_usage` writer, metrics, the
//! stream's exactly-once output). What is billed is recorded by the code that
//! paid, so `provider_usage` does not depend on what a query selects.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::clock::Micros;
use crate::lookup::{Attempt, Policy};

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

/// A request about to be sent, as the journal keeps it until its row comes.
#[derive(Debug, Clone, Copy)]
pub struct Sending<'a> {
    pub lead: &'a LeadRef,
    pub provider: &'a str,
    pub attempt: i32,
    pub started_at: Micros,
    pub policy: Option<Policy>,
}

/// A durable record of usage kept ahead of the ledger's owner, so a process
/// killed mid-run leaves every request it sent on record: each request is
/// journaled *before* it is sent ([`UsageJournal::sending`]) and its row
/// when it ends ([`UsageJournal::ended`], with the ticket `sending` gave).
/// A request journaled with no row after it is one whose answer never came
/// back. Writes are synchronous and short (an append to a file).
pub trait UsageJournal: Send + Sync + std::fmt::Debug {
    /// Journals a request about to be sent; the ticket pairs it with its row.
    fn sending(&self, request: Sending<'_>) -> u64;
    /// Journals a finished call (with its ticket) or a skip (`None`).
    fn ended(&self, ticket: Option<u64>, usage: &ProviderUsage);
}

/// Where the waterfall reports usage. Cloning shares the ledger; a ledger
/// from [`UsageLedger::discard`] (the default) drops what it is given, for
/// ad-hoc queries that call no provider.
#[derive(Debug, Clone, Default)]
pub struct UsageLedger {
    tx: Option<mpsc::Sender<ProviderUsage>>,
    journal: Option<Arc<dyn UsageJournal>>,
}

impl UsageLedger {
    /// A ledger and the receiving end its owner drains. At most `capacity`
    /// rows wait; past that a lookup waits for the writer, so memory stays
    /// bounded and nothing is dropped.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<ProviderUsage>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                tx: Some(tx),
                journal: None,
            },
            rx,
        )
    }

    /// This ledger, journaling every request ahead of time into `journal`.
    pub fn with_journal(mut self, journal: Arc<dyn UsageJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Journals a request the moment before it is sent; the ticket goes
    /// with its row to [`UsageLedger::record`].
    pub fn sending(&self, request: Sending<'_>) -> Option<u64> {
        self.journal.as_ref().map(|j| j.sending(request))
    }

    /// A ledger that keeps nothing.
    pub fn discard() -> Self {
        Self::default()
    }

    /// Records one attempt (`ticket`: what [`UsageLedger::sending`] gave
    /// for its request; `None` for a skip). Returns once the owner holds it.
    pub async fn record(&self, lead: &LeadRef, attempt: &Attempt, ticket: Option<u64>) {
        let Some(tx) = &self.tx else { return };
        let usage = ProviderUsage {
            lead: lead.clone(),
            attempt: attempt.clone(),
        };
        if let Some(journal) = &self.journal {
            journal.ended(ticket, &usage);
        }
        if tx.send(usage).await.is_err() {
            // The owner stopped draining: its run has already failed and
            // says why; a lookup still under way has nowhere to report to.
            tracing::warn!(provider = %attempt.provider, "usage ledger closed; a provider attempt was not recorded");
        }
    }
}
