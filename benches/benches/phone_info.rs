//! `phone_info` throughput on 100k distinct mixed-format numbers from every
//! region, on one core: the Rust parser, and the UDF through SQL.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use leadflow_phone::{PhoneInfo, PhoneParser, corpus};

fn cases() -> Vec<corpus::Case> {
    let mut all = corpus::build(1, 60);
    all.truncate(100_000);
    all
}

fn parser(c: &mut Criterion) {
    let cases = cases();
    let mut group = c.benchmark_group("phone_info");
    group.throughput(Throughput::Elements(cases.len() as u64));
    group.sample_size(10);
    group.bench_function("parser_100k", |b| {
        let mut parser = PhoneParser::default();
        let mut info = PhoneInfo::default();
        b.iter(|| {
            for case in &cases {
                parser.parse_into(&case.raw, case.region, &mut info);
                black_box(&info);
            }
        })
    });

    let schema = Arc::new(Schema::new(vec![
        Field::new("phone_raw", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
    ]));
    let raw = StringArray::from_iter_values(cases.iter().map(|c| c.raw.as_str()));
    let region = StringArray::from_iter(
        cases
            .iter()
            .map(|c| c.region.map(|r| r.as_region_str().to_string())),
    );
    let batches: Vec<RecordBatch> = (0..cases.len())
        .step_by(8192)
        .map(|start| {
            let len = 8192.min(cases.len() - start);
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    leadflow_udfs::register_all(&ctx);
    ctx.register_table(
        "leads",
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
    )
    .unwrap();
    group.bench_function("sql_100k_one_core", |b| {
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
    group.finish();
}

criterion_group!(benches, parser);
criterion_main!(benches);
