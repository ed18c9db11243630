//! The ceiling of loopback HTTP on this machine: the same client (reqwest)
//! and server stack (hyper-util's auto builder under axum) as the waterfall
//! and the sandbox, with nothing else in them. The server answers every POST
//! with a fixed JSON body; the client sends a lead-sized JSON body and reads
//! the answer, `--concurrency` in flight, client and server sharing one tokio
//! runtime on the machine's cores, as in the waterfall benchmark.
//!
//! It bounds what any waterfall can do over HTTP here: a lookup costs
//! 1 + (1 − h) + (1 − h)² calls with three providers at hit rate h, so
//! lookups/s can never exceed this figure divided by that.
//!
//!   cargo build --release -p leadflow-benches
//!   target/release/http_ceiling                 # h2c, as the waterfall talks to the sandbox
//!   target/release/http_ceiling --http1         # HTTP/1.1, a pooled connection per request in flight

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::routing::post;
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

const ANSWER: &str = r#"{"phone":"+14155550123","confidence":0.92}"#;
const BODY: &str = r#"{"email":"user1@company1.com","full_name":"First1 Last1","company_website":"company1.com","country":"US"}"#;

struct Args {
    requests: usize,
    concurrency: usize,
    http1: bool,
    rounds: usize,
}

fn args() -> Args {
    let mut args = Args {
        requests: 200_000,
        concurrency: 256,
        http1: false,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match flag.as_str() {
            "--requests" => args.requests = value("--requests"),
            "--concurrency" => args.concurrency = value("--concurrency"),
            "--rounds" => args.rounds = value("--rounds"),
            "--http1" => args.http1 = true,
            other => panic!(
                "unknown flag {other}; use --requests N, --concurrency N, --rounds N, --http1"
            ),
        }
    }
    args
}

async fn serve(listener: TcpListener) {
    let router = Router::new().route(
        "/find",
        // Reads the body, as the sandbox does: an h2 server that answers
        // before it has, resets the stream under the client's upload.
        post(|body: Bytes| async move {
            let status = if body.len() == BODY.len() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            (status, [(header::CONTENT_TYPE, "application/json")], ANSWER)
        }),
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(None);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let url = format!("http://{}/find", listener.local_addr().expect("addr"));
        tokio::spawn(serve(listener));
        let builder = reqwest::Client::builder().tcp_nodelay(true);
        let client = if args.http1 {
            builder.pool_max_idle_per_host(args.concurrency)
        } else {
            builder.http2_prior_knowledge()
        }
        .build()
        .expect("client");
        println!(
            "{} requests per round, {} in flight, {}, {} cores",
            args.requests,
            args.concurrency,
            if args.http1 { "HTTP/1.1" } else { "h2c" },
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        );
        for round in 1..=args.rounds {
            let start = Instant::now();
            let answers: Vec<Result<bool, reqwest::Error>> =
                futures::stream::iter(0..args.requests)
                    .map(|_| {
                        let request = client
                            .post(&url)
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(BODY);
                        async move {
                            let answer = request.send().await?.error_for_status()?;
                            let body = answer.bytes().await?;
                            Ok::<_, reqwest::Error>(body.len() == ANSWER.len())
                        }
                    })
                    .buffer_unordered(args.concurrency)
                    .collect()
                    .await;
            let secs = start.elapsed().as_secs_f64();
            let ok = answers.iter().filter(|a| matches!(a, Ok(true))).count();
            println!(
                "round {round}: {:>9.0} answered requests/s ({secs:.2} s)",
                ok as f64 / secs
            );
            if let Some(e) = answers.iter().find_map(|a| a.as_ref().err()) {
                println!(
                    "  {} of {} failed; the first: {e:?}",
                    args.requests - ok,
                    args.requests
                );
            }
        }
    });
}
