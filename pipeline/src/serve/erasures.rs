//! `POST /v1/erasures` and `GET /v1/erasures/{id}`: `leadflow forget` over
//! HTTP, for keys with `admin = true`. An erasure is accepted (202 and its
//! receipt id), carried out in the background with the same semantics as
//! the command (one commit, Redis purged first, the receipt under
//! `_leadflow/erasures/`), and read back by id: running, done with its
//! receipt, or failed with why.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::problem::Problem;
use crate::config::LeadflowConfig;
use crate::privacy::forget::{self, ForgetOptions, Subjects};
use crate::storage::Location;

/// `POST /v1/erasures`' body: the people to forget.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ErasureRequest {
    /// Emails (trimmed, any case).
    #[serde(default)]
    emails: Vec<String>,
    /// Lead ids.
    #[serde(default)]
    lead_ids: Vec<String>,
    /// Phones, with their country code (`+4930123456`).
    #[serde(default)]
    phones: Vec<String>,
}

/// Where an erasure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum ErasureState {
    Running,
    Done,
    Failed,
}

/// An erasure as `GET /v1/erasures/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct ErasureView {
    /// The receipt's id (`er_…`).
    id: String,
    state: ErasureState,
    /// Why it failed (nothing was erased then).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The receipt, once done: counts, and each subject as a keyed hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    receipt: Option<serde_json::Value>,
}

impl ErasureView {
    pub(super) fn running(&self) -> bool {
        self.state == ErasureState::Running
    }
}

/// The erasures this server started, and where to carry them out.
pub(super) struct Erasures {
    location: Location,
    config: LeadflowConfig,
    started: Mutex<HashMap<String, ErasureView>>,
    /// The erasures under way, awaited when the server stops.
    running: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Erasures {
    pub(super) fn new(location: Location, config: LeadflowConfig) -> Arc<Self> {
        Arc::new(Self {
            location,
            config,
            started: Mutex::default(),
            running: Mutex::default(),
        })
    }

    /// Validates `body` and starts its erasure: its view (running).
    pub(super) fn start(self: &Arc<Self>, body: &[u8]) -> Result<ErasureView, Problem> {
        forget::check_receipt_key(&self.config)
            .map_err(|e| Problem::erasures_unavailable(e.to_string()))?;
        let request: ErasureRequest = serde_json::from_slice(body).map_err(Problem::bad_json)?;
        let mut subjects = Subjects::default();
        for (field, values, add) in [
            (
                "emails",
                &request.emails,
                Subjects::email as fn(&mut Subjects, &str) -> _,
            ),
            ("lead_ids", &request.lead_ids, Subjects::lead_id),
            ("phones", &request.phones, Subjects::phone),
        ] {
            for (i, value) in values.iter().enumerate() {
                add(&mut subjects, value)
                    .map_err(|e| Problem::invalid(&format!("{field}/{i}"), e.to_string()))?;
            }
        }
        if subjects.is_empty() {
            return Err(Problem::invalid(
                "emails",
                "name at least one subject in emails, lead_ids or phones".into(),
            ));
        }
        let id = forget::new_receipt_id();
        let view = ErasureView {
            id: id.clone(),
            state: ErasureState::Running,
            error: None,
            receipt: None,
        };
        self.started
            .lock()
            .expect("not poisoned")
            .insert(id.clone(), view.clone());
        let this = self.clone();
        let task = tokio::spawn(async move {
            let options = ForgetOptions {
                dry_run: false,
                config: this.config.clone(),
                id: Some(id.clone()),
            };
            let done = forget::forget(&this.location, &subjects, &options).await;
            let mut started = this.started.lock().expect("not poisoned");
            let view = started.get_mut(&id).expect("started above");
            match done {
                Ok(receipt) => {
                    view.state = ErasureState::Done;
                    view.receipt = serde_json::to_value(&receipt).ok();
                }
                Err(e) => {
                    tracing::warn!(id, error = %e, "an erasure failed; nothing was erased");
                    view.state = ErasureState::Failed;
                    view.error = Some(e.to_string());
                }
            }
        });
        let mut running = self.running.lock().expect("not poisoned");
        running.retain(|t| !t.is_finished());
        running.push(task);
        Ok(view)
    }

    /// Waits for the erasures under way: a server asked to stop finishes
    /// what it accepted (each is one commit; one cut short would commit
    /// nothing and leave its receipt unwritten).
    pub(super) async fn finish(&self) {
        let running = std::mem::take(&mut *self.running.lock().expect("not poisoned"));
        for task in running {
            let _ = task.await;
        }
    }

    /// Erasure `id`: one this server started, else its receipt in the
    /// output.
    pub(super) async fn view(&self, id: &str) -> Result<Option<ErasureView>, Problem> {
        if let Some(view) = self.started.lock().expect("not poisoned").get(id) {
            return Ok(Some(view.clone()));
        }
        let receipt = forget::read_receipt(&self.location, id)
            .await
            .map_err(Problem::internal)?;
        Ok(receipt.map(|receipt| ErasureView {
            id: id.to_string(),
            state: ErasureState::Done,
            error: None,
            receipt: Some(receipt),
        }))
    }
}
