//! `phone_info` throughput on one core, the Rust parser and the UDF through
//! SQL, on two corpora side by side:
//! - `*_100k`: 100k distinct mixed-format numbers from every region
//!   (`leadflow_phone::corpus`: examples, shapes, mutations, junk);
//! - `*_export_100k`: 100k phones as sales exports have them
//!   (`leadflow_benches::export`: 20 countries weighted to the US, every
//!   way of writing a number, blanks, junk, repeated office lines).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use leadflow_phone::{PhoneInfo, PhoneParser, Region, corpus};

/// A corpus: raw phones and the region each is read in.
struct Cases {
    raw: Vec<String>,
    region: Vec<Option<Region>>,
}

fn synthetic() -> Cases {
    let mut all = corpus::build(1, 60);
    all.truncate(100_000);
    Cases {
        region: all.iter().map(|c| c.region).collect(),
        raw: all.into_iter().map(|c| c.raw).collect(),
    }
}

fn export() -> Cases {
    let phones = leadflow_benches::export::phones(100_000, 1);
    Cases {
        region: phones.iter().map(|p| p.region()).collect(),
        raw: phones.into_iter().map(|p| p.raw).collect(),
    }
}

fn phone_info(c: &mut Criterion) {
    let mut group = c.benchmark_group("phone_info");
    group.sample_size(10);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, cases) in [("100k", synthetic()), ("export_100k", export())] {
        group.throughput(Throughput::Elements(cases.raw.len() as u64));
        group.bench_function(format!("parser_{name}"), |b| {
            let mut parser = PhoneParser::default();
            let mut info = PhoneInfo::default();
            b.iter(|| {
                for (raw, region) in cases.raw.iter().zip(&cases.region) {
                    parser.parse_into(raw, *region, &mut info);
                    black_box(&info);
                }
            })
        });

        let ctx = session(&cases);
        group.bench_function(format!("sql_{name}_one_core"), |b| {
            b.iter_batched(
                || (),
                |_| {
                    runtime.block_on(async {
                        let df = ctx
                            .sql("select phone_info(phone_raw, country) from leads")
                            .await
                            .unwrap();
                        black_box(df.collect().await.unwrap());
                    })
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// One partition, the cases as a `leads` table in batches of 8,192.
fn session(cases: &Cases) -> SessionContext {
    let schema = Arc::new(Schema::new(vec![
        Field::new("phone_raw", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
    ]));
    let raw = StringArray::from_iter_values(cases.raw.iter());
    let region = StringArray::from_iter(
        cases
            .region
            .iter()
            .map(|r| r.map(|r| r.as_region_str().to_string())),
    );
    let batches: Vec<RecordBatch> = (0..cases.raw.len())
        .step_by(8192)
        .map(|start| {
            let len = 8192.min(cases.raw.len() - start);
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(raw.slice(start, len)),
                    Arc::new(region.slice(start, len)),
                ],
            )
            .unwrap()
        })
        .collect();
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    leadflow_udfs::register_all(&ctx);
    ctx.register_table(
        "leads",
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
    )
    .unwrap();
    ctx
}

criterion_group!(benches, phone_info);
criterion_main!(benches);
