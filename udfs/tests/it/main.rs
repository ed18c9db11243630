//! Integration tests of the UDFs through real SQL, in one binary so the
//! build links once.

mod slt;
mod sql;

use std::sync::Arc;

use leadflow_sandbox::Sandbox;
use leadflow_waterfall::{ManualClock, Services, Waterfall, WaterfallConfig};

/// A waterfall over the providers of a config file's text, those with
/// `base_url = "sandbox"` answered by a sandbox started from its
/// `[sandbox]`, on a manual clock.
async fn sandboxed_waterfall(toml: &str) -> (Arc<Waterfall>, Sandbox) {
    let (sandbox, toml) = Sandbox::start_for_config(toml).await.unwrap();
    let config = WaterfallConfig::from_toml(&toml).unwrap();
    let services = Services::in_memory(&config, Arc::new(ManualClock::default()));
    let waterfall = Waterfall::builder(config)
        .services(services)
        .secrets(|_, _| Some("sandbox-key".into()))
        .build()
        .unwrap();
    (Arc::new(waterfall), sandbox)
}
