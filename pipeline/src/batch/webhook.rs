//! The batch's webhook: one Slack-compatible message (`text` for
//! notifications and plain receivers, `blocks` for Slack's layout) when a
//! batch ends, retried with backoff, never changing the batch's outcome.

use std::time::Duration;

use serde_json::{Value, json};

/// Where and how patiently to post.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The URL is a secret (Slack's carry a token): logs show its host only.
    pub url: String,
    pub attempts: u32,
    /// Waits between attempts: `backoff`, then twice that, and so on.
    pub backoff: Duration,
    pub timeout: Duration,
    /// Sent with every attempt (a signature, say).
    pub headers: Vec<(String, String)>,
    /// The address the URL's host is reached at, resolved and checked
    /// before: a second lookup cannot point it elsewhere.
    pub pinned: Option<std::net::SocketAddr>,
}

impl Webhook {
    pub fn new(url: String) -> Self {
        Self {
            url,
            attempts: 4,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
            pinned: None,
        }
    }

    fn host(&self) -> String {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "(unparsable URL)".into())
    }

    /// Posts `message`; true when the receiver took it (2xx). Failures are
    /// logged, not returned: the batch's result is what it is either way.
    pub async fn send(&self, message: &Value) -> bool {
        self.send_body(message.to_string()).await
    }

    /// Posts `body` (JSON) as it is; see [`Webhook::send`].
    pub async fn send_body(&self, body: String) -> bool {
        // A redirect would re-post the message to another origin, with the
        // secret URL as its `Referer`: neither is followed nor sent.
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false);
        if let (Some(addr), Some(host)) = (
            self.pinned,
            url::Url::parse(&self.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string)),
        ) {
            builder = builder.resolve(&host, addr);
        }
        let client = match builder.build() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "webhook: no HTTP client");
                return false;
            }
        };
        let mut wait = self.backoff;
        for attempt in 1..=self.attempts.max(1) {
            let mut request = client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            let outcome = request.body(body.clone()).send().await;
            let retryable = match outcome {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) if r.status().is_redirection() => {
                    let status = r.status();
                    tracing::warn!(
                        host = self.host(),
                        attempt,
                        %status,
                        "webhook answered with a redirect, which is not followed"
                    );
                    false
                }
                Ok(r) => {
                    let status = r.status();
                    tracing::warn!(host = self.host(), attempt, %status, "webhook refused");
                    // 4xx but 408/429 will not change on a retry.
                    status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT
                }
                Err(e) => {
                    // reqwest's error text holds the URL: log the kind only.
                    let kind = if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "could not connect"
                    } else {
                        "failed"
                    };
                    tracing::warn!(host = self.host(), attempt, "webhook {kind}");
                    true
                }
            };
            if !retryable || attempt == self.attempts {
                break;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        tracing::warn!(
            host = self.host(),
            "webhook not delivered; what it tells of stands"
        );
        false
    }
}

/// A field of a section: bold label over its value.
fn field(label: &str, value: impl std::fmt::Display) -> Value {
    json!({"type": "mrkdwn", "text": format!("*{label}*\n{value}")})
}

/// The message for a batch that wrote its output.
pub fn success(report: &super::BatchReport, out: &str) -> Value {
    let m = &report.manifest;
    let s = &report.summary;
    let (leads, numbers) = report.budget_exhausted();
    let state = if s.lookups.budget_ran_out() {
        "finished, budget exhausted"
    } else {
        "succeeded"
    };
    let mut fields = vec![
        field("Leads written", s.leads_written),
        field("Rejected", s.rejects),
        field("Phones found", s.lookups.found()),
        field("Spend", super::dollars(s.lookups.spend_micros())),
        field("Input files", m.inputs.len()),
        field("Took", format!("{:.1} s", s.elapsed.as_secs_f64())),
    ];
    if leads > 0 {
        fields.push(field("Not looked up (budget)", leads));
    }
    if numbers > 0 {
        fields.push(field("No line type (budget)", numbers));
    }
    json!({
        "text": format!("leadflow batch {} {state}: {}", m.date, super::headline(report)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": format!("leadflow batch {}: {state}", m.date)}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "run `{}` · output `{out}` · manifest `{}` · leadflow {}",
                m.run_id, report.manifest_url, m.leadflow_version
            )}]},
        ],
    })
}

/// The message for a batch that failed: its output for the date is as it was.
pub fn failure(date: chrono::NaiveDate, out: &str, error: &str, exit_code: i32) -> Value {
    json!({
        "text": format!("leadflow batch {date} failed (exit {exit_code}): {error}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": format!("leadflow batch {date}: failed")}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("```{error}```")}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "exit {exit_code} · output `{out}` for {date} left as it was · leadflow {}",
                env!("CARGO_PKG_VERSION")
            )}]},
        ],
    })
}
