//! What the adaptive order learns from earlier outputs (`[waterfall]
//! history`): their `provider_usage` answered calls joined to the leads in
//! their `enriched_leads` for segments, counted by the engine and added to
//! the waterfall's [`Learned`] at start; and `leadflow explain`, which
//! shows an operator the order a lead would get and why.

use std::fmt::Write as _;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use leadflow_waterfall::config::{dollars, usd_of_micros};
use leadflow_waterfall::{Evidence, Explanation, LeadQuery, Learned, Seeding};

use crate::error::{Error, Result};

/// Answered calls by provider and segment: the email reduced to its domain
/// (all a segment reads of it), each lead counted once however many runs
/// wrote it.
const HISTORY: &str = "
WITH leads AS (
    -- One row per lead, however many runs wrote it (and with whatever
    -- changes): a call is counted once.
    SELECT lead_id,
           max(country) AS country,
           max(CASE WHEN strpos(email, '@') > 0
                    THEN lower(substr(email, strpos(email, '@') + 1)) END) AS email_domain,
           max(CAST(user_tier AS BIGINT)) AS user_tier
    FROM enriched_leads
    WHERE lead_id IS NOT NULL
    GROUP BY lead_id
)
SELECT u.provider,
       l.country,
       l.email_domain,
       l.user_tier,
       count(*) AS calls,
       count(*) FILTER (WHERE u.outcome = 'hit') AS hits
FROM provider_usage u
JOIN leads l ON u.lead_id = l.lead_id
WHERE u.attempt > 0 AND u.outcome IN ('hit', 'miss')
GROUP BY 1, 2, 3, 4";

/// What [`learn_history`] took in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCounts {
    pub calls: u64,
    pub hits: u64,
    /// (provider, segment) groups read.
    pub groups: u64,
}

/// Adds the answered calls of the output at `history` to `learned`, where
/// `to` says (this process, or the fleet's pool).
pub async fn learn_history(history: &str, learned: &Learned, to: Seeding) -> Result<HistoryCounts> {
    let at = |e: Error| Error::Usage(format!("[waterfall] history = {history:?}: {e}"));
    let (ctx, _) = crate::sql::context(Some(history), &[]).await.map_err(at)?;
    let batches = async { ctx.sql(HISTORY).await?.collect().await }
        .await
        .map_err(|e| at(e.into()))?;
    let mut counts = HistoryCounts::default();
    for batch in &batches {
        let text = |i: usize| -> Result<_> {
            let column = datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8)?;
            Ok(column.as_string::<i32>().clone())
        };
        let (provider, country, domain) = (text(0)?, text(1)?, text(2)?);
        let tier = datafusion::arrow::compute::cast(batch.column(3), &DataType::Int64)?;
        let tier = tier.as_primitive::<Int64Type>();
        let number = |i: usize| -> Result<_> {
            let column = datafusion::arrow::compute::cast(batch.column(i), &DataType::Int64)?;
            Ok(column.as_primitive::<Int64Type>().clone())
        };
        let (calls, hits) = (number(4)?, number(5)?);
        for row in 0..batch.num_rows() {
            let lead = LeadQuery {
                email: match domain.is_valid(row) {
                    true => format!("lead@{}", domain.value(row)),
                    false => String::new(),
                },
                country: country
                    .is_valid(row)
                    .then(|| country.value(row).to_string()),
                user_tier: tier
                    .is_valid(row)
                    .then(|| i32::try_from(tier.value(row)).unwrap_or(i32::MAX)),
                ..Default::default()
            };
            let evidence = Evidence {
                calls: calls.value(row).max(0) as u64,
                hits: hits.value(row).max(0) as u64,
            };
            learned.add_evidence(to, provider.value(row), &lead, evidence);
            counts.calls += evidence.calls;
            counts.hits += evidence.hits;
            counts.groups += 1;
        }
    }
    Ok(counts)
}

/// `leadflow explain`'s text for one lead.
pub fn explanation_text(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = write!(out, "policy: {}", e.policy.as_str());
    match &e.segment {
        Some(segment) => {
            let _ = write!(out, "    segment: {segment}");
        }
        None => out.push_str("    (order = \"priority\": no estimates)"),
    }
    if e.explored {
        out.push_str("    explores: the estimates below are draws from each posterior");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<3} {:<16} {:>8} {:>10} {:>10} {:>10} {:>14}  evidence (hits/calls by level) · why skipped",
        "#", "provider", "priority", "cost/call", "cost/hit", "P(hit)", "cost per hit"
    );
    for (i, p) in e.providers.iter().enumerate() {
        let (p_hit, per_hit) = match p.estimate {
            Some(est) => (
                if e.explored {
                    format!("{:.3} (mean {:.3})", est.p_hit, est.p_mean)
                } else {
                    format!("{:.3}", est.p_hit)
                },
                usd_of_micros(est.cost_per_hit_micros),
            ),
            None => ("-".into(), "-".into()),
        };
        let evidence: Vec<String> = p
            .evidence
            .iter()
            .map(|(level, e)| format!("{level} {}/{}", e.hits, e.calls))
            .collect();
        let mut note = evidence.join(", ");
        if let Some(skip) = &p.skip {
            if !note.is_empty() {
                note.push_str(" · ");
            }
            note.push_str(skip);
        }
        let _ = writeln!(
            out,
            "{:<3} {:<16} {:>8} {:>10} {:>10} {:>10} {:>14}  {}",
            i + 1,
            p.provider,
            p.priority,
            dollars((p.cost_per_call_usd * 1e6).round() as i64),
            dollars((p.cost_per_hit_usd * 1e6).round() as i64),
            p_hit,
            per_hit,
            note
        );
    }
    out.push_str(
        "Rate limits, circuit breakers and budgets are consulted when a call is about to be made; \
         they skip a provider without changing the order.\n",
    );
    out
}

/// A lead given as JSON (`leadflow explain --lead`), read as a lead on
/// the topic or `POST /v1/lookups` is (the Kafka source's decoder: the
/// same names, country spellings, tiers, and `lead_id` from the lead's
/// identity when it has none, which decides its side of the A/B split).
pub fn lead_of_json(text: &str) -> Result<(LeadQuery, leadflow_waterfall::LeadRef)> {
    use crate::lead::{LeadBuilder, LeadOptions};
    let options = LeadOptions {
        batch_size: 1,
        default_country: None,
        owner: None,
    };
    let mut builder = LeadBuilder::new(leadflow_schemas::lead_schema([]), options);
    crate::sources::kafka::decode::LeadDecoder::new(usize::MAX)
        .push(None, Some(text.as_bytes()), &mut builder)
        .map_err(|why| Error::Usage(format!("--lead: {why}")))?;
    let lead = builder.finish()?;
    let text = |name: &str| -> Option<String> {
        let column = lead.column_by_name(name)?.as_string_opt::<i32>()?;
        column.is_valid(0).then(|| column.value(0).to_string())
    };
    let tier = lead
        .column_by_name("user_tier")
        .and_then(|c| c.as_primitive_opt::<datafusion::arrow::datatypes::Int32Type>())
        .filter(|c| c.is_valid(0))
        .map(|c| c.value(0));
    let query = LeadQuery {
        email: text("email").unwrap_or_default(),
        full_name: text("full_name").unwrap_or_default(),
        company_website: text("company_website").unwrap_or_default(),
        country: text("country"),
        user_tier: tier,
        own_phone: text("phone_raw").map_or(leadflow_waterfall::OwnPhone::None, |p| {
            leadflow_waterfall::OwnPhone::Raw(p)
        }),
    };
    let owner = leadflow_waterfall::LeadRef {
        lead_id: text("lead_id").map(Into::into),
        organization_id: text("organization_id").map(Into::into),
    };
    Ok((query, owner))
}

/// `leadflow explain`: the order `lead` would get under `config`, having
/// learned from `history` (the config's `[waterfall] history` unless given).
pub async fn explain(
    config: &crate::config::LeadflowConfig,
    history: Option<&str>,
    lead: &str,
) -> Result<String> {
    use std::sync::Arc;
    let (lead, owner) = lead_of_json(lead)?;
    let waterfall_config = config.waterfall(|name| format!("http://127.0.0.1/{name}"));
    let services = leadflow_waterfall::Services::in_memory(
        &waterfall_config,
        Arc::new(leadflow_waterfall::SystemClock),
    );
    // Nothing is called: every provider gets a placeholder credential.
    let waterfall = leadflow_waterfall::Waterfall::builder(waterfall_config.clone())
        .services(services.clone())
        .secrets(|_, _| Some("explain-calls-nobody".into()))
        .build()?;
    let mut out = String::new();
    // The fleet's pool first: when it holds evidence, it holds the history
    // its first worker added, which is not counted again.
    let mut pooled = 0;
    if let Some(url) = &config.redis.url {
        let fleet = leadflow_fleet::Fleet::observe(url, config.redis.clone())
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        services.learned.pool_with(fleet.evidence_store());
        pooled = services.learned.exchange().await;
        let _ = writeln!(
            out,
            "the fleet's pooled evidence in Redis at {}: {pooled} provider-level counts",
            leadflow_fleet::redacted(url)
        );
    }
    match history.or(waterfall_config.order.history.as_deref()) {
        Some(history) if pooled > 0 => {
            let _ = writeln!(
                out,
                "{history} not read: the fleet's pool holds its history"
            );
        }
        Some(history) => {
            let counts = learn_history(history, &services.learned, Seeding::Local).await?;
            let _ = writeln!(
                out,
                "learned from {history}: {} answered calls, {} hits ({} groups of provider, country, email domain and tier)",
                counts.calls, counts.hits, counts.groups
            );
        }
        None if pooled > 0 => {}
        None => out.push_str("no history: estimates start from each provider's prior\n"),
    }
    out.push_str(&explanation_text(&waterfall.explain(&lead, &owner)));
    Ok(out)
}
