//! leadflow-fleet against a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`), each test under its own key prefix; the
//! outage tests start (and kill) a `redis-server` of their own.

mod breaker_budget;
mod learned;
mod limiter;
mod lookups;
mod outage;
mod refusals;
mod support;
