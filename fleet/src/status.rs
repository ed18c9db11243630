//! `leadflow status`: what Redis holds for a config's providers.

use std::fmt;
use std::sync::Arc;

use leadflow_waterfall::WaterfallConfig;

use crate::config::RedisConfig;
use crate::conn::Redis;
use crate::limiter;

/// The fleet's shared state, as read from Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Per provider, in the config's order.
    pub providers: Vec<ProviderStatus>,
    /// µUSD spent today (UTC, Redis's clock) in all, and per organization.
    pub spent_today: i64,
    pub spent_today_by_org: Vec<(String, i64)>,
    /// µUSD reserved today by workers and not yet booked as spent: what
    /// running workers may have spent since their last booking (chunks)
    /// is in here, so spent + reserved never undercounts.
    pub reserved_today: i64,
    /// The day's cap, µUSD, if any.
    pub per_day_cap: Option<i64>,
    /// Answers held in the lookup cache.
    pub cache_entries: u64,
    /// Workers heard from in the last three heartbeats.
    pub live_workers: u64,
    /// Redis's date, `YYYY-MM-DD`.
    pub date: String,
}

/// One provider's window and circuit.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderStatus {
    pub name: String,
    /// Permits taken in the current window (leases included) and the limit.
    pub used: u64,
    pub limit: u32,
    pub window_secs: u64,
    /// `closed`, `open (N s left)` or `half-open`.
    pub breaker: String,
}

pub(crate) async fn read(
    redis: &Arc<Redis>,
    waterfall: &WaterfallConfig,
    config: &RedisConfig,
) -> Result<Status, String> {
    let gone = || "Redis does not answer".to_string();
    if !redis.online() && !redis.probe().await {
        return Err(gone());
    }
    let (secs, micros): (i64, i64) = redis.query(&redis::cmd("TIME")).await.ok_or_else(gone)?;
    let now = secs * 1_000_000 + micros + redis.clock_shift();
    let date = crate::budget::date_of(now);
    let window = waterfall.lookup.rate_window_secs as i64 * 1_000_000;
    let mut providers = Vec::new();
    for p in &waterfall.providers {
        let used = limiter::window_used(redis, &p.name, window)
            .await
            .ok_or_else(gone)?;
        let keys = redis.keys().breaker(&p.name);
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(&keys[0]).arg("open_until").arg("probe_until");
        let (open_until, probe_until): (Option<i64>, Option<i64>) =
            redis.query(&hmget).await.ok_or_else(gone)?;
        let breaker = match open_until {
            None | Some(0) => "closed".to_string(),
            Some(until) if now < until => {
                format!("open ({} s left)", (until - now + 999_999) / 1_000_000)
            }
            Some(_) if probe_until.is_some_and(|p| p > now) => "half-open (probing)".into(),
            Some(_) => "half-open".into(),
        };
        providers.push(ProviderStatus {
            name: p.name.clone(),
            used: used.max(0) as u64,
            limit: p.max_requests_per_hour,
            window_secs: waterfall.lookup.rate_window_secs,
            breaker,
        });
    }
    let mut hgetall = redis::cmd("HGETALL");
    hgetall.arg(redis.keys().budget_day(&date));
    let day: Vec<(String, i64)> = redis.query(&hgetall).await.ok_or_else(gone)?;
    let field = |name: &str| day.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v);
    let spent_today = field("spent");
    let reserved_today = field("reserved").max(0);
    let mut spent_today_by_org: Vec<(String, i64)> = day
        .iter()
        .filter_map(|(k, v)| {
            let org = k.strip_prefix("org:")?.strip_suffix(":spent")?;
            Some((org.to_string(), *v))
        })
        .collect();
    spent_today_by_org.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

    let mut cache_entries = 0u64;
    let mut cursor = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(redis.keys().answer_pattern())
            .arg("COUNT")
            .arg(10_000);
        let (next, keys): (u64, Vec<String>) = redis.query(&scan).await.ok_or_else(gone)?;
        cache_entries += keys.len() as u64;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let alive = config.heartbeat_ms as i64 * 1_000 * 3;
    let mut zcount = redis::cmd("ZCOUNT");
    zcount
        .arg(redis.keys().workers())
        .arg(now - alive)
        .arg("+inf");
    let live_workers: u64 = redis.query(&zcount).await.ok_or_else(gone)?;
    Ok(Status {
        providers,
        spent_today,
        spent_today_by_org,
        reserved_today,
        per_day_cap: waterfall
            .budget
            .per_day_usd
            .map(leadflow_waterfall::config::usd_to_micros),
        cache_entries,
        live_workers,
        date,
    })
}

fn usd(micros: i64) -> String {
    leadflow_waterfall::config::dollars(micros)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "providers (permits used / limit in the current window)")?;
        for p in &self.providers {
            writeln!(
                f,
                "  {:<12} {:>8} / {:<8} per {} s   breaker {}",
                p.name, p.used, p.limit, p.window_secs, p.breaker
            )?;
        }
        match self.per_day_cap {
            Some(cap) => writeln!(
                f,
                "spent today ({}): {} of {}",
                self.date,
                usd(self.spent_today),
                usd(cap)
            )?,
            None => writeln!(f, "spent today ({}): {}", self.date, usd(self.spent_today))?,
        }
        if self.reserved_today > 0 {
            writeln!(
                f,
                "  and {} reserved by running workers (what they spent since their last booking is in it)",
                usd(self.reserved_today)
            )?;
        }
        for (org, spent) in self.spent_today_by_org.iter().take(20) {
            writeln!(f, "  {org:<24} {}", usd(*spent))?;
        }
        if self.spent_today_by_org.len() > 20 {
            writeln!(
                f,
                "  … and {} more organizations",
                self.spent_today_by_org.len() - 20
            )?;
        }
        writeln!(f, "cache entries: {}", self.cache_entries)?;
        write!(f, "live workers: {}", self.live_workers)
    }
}
