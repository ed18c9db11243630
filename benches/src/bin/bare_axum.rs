//! The ceiling for `leadflow serve`'s lookups: an axum server on the same
//! stack (`axum::serve`, HTTP/1.1) whose `POST /v1/lookups` reads the body
//! and answers a fixed JSON answer (the one `leadflow serve` gives for the
//! benchmark's lead), with nothing else in it. `benches/serve_lookups.sh`
//! drives both with wrk.
//!
//!   target/release/bare_axum 127.0.0.1:18090 answer.json

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::post;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).expect("bare_axum ADDR ANSWER_FILE").clone();
    let answer =
        Bytes::from(std::fs::read(args.get(2).expect("bare_axum ADDR ANSWER_FILE")).unwrap());
    let router = Router::new().route(
        "/v1/lookups",
        post(move |body: Bytes| {
            let answer = answer.clone();
            async move {
                // Read as the real handler reads it: parsed.
                let _: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                ([(header::CONTENT_TYPE, "application/json")], answer)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    axum::serve(listener, router).await.unwrap();
}
