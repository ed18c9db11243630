//! The UDFs through real SQL on a SessionContext; `find_phone` and
//! `phone_line_type` against the provider sandbox over real HTTP.

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use leadflow_sandbox::Sandbox;

fn ctx() -> SessionContext {
    let ctx = SessionContext::new();
    leadflow_udfs::register_all(&ctx);
    ctx
}

async fn table(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

async fn setup(ctx: &SessionContext) {
    ctx.sql(
        "create table leads(id int, phone_raw varchar, country varchar) as values
         (1, '(415) 555-0132', 'US'),
         (2, '020 7183 8750', 'gb'),
         (3, '+49 30 1234567', NULL),
         (4, 'call me maybe', 'US'),
         (5, NULL, 'US'),
         (6, '   ', 'FR'),
         (7, '12', 'US'),
         (8, '+1 415 555 01', 'US'),
         (9, '0612345678', 'ZZ')",
    )
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
}

#[tokio::test]
async fn phone_info_fields_for_every_kind_of_input() {
    let ctx = ctx();
    setup(&ctx).await;
    let got = table(
        &ctx,
        "select id, p['e164'] e164, p['valid'] valid, p['possible'] possible, p['country'] country,
                p['type'] type, p['national'] national, p['error'] error
         from (select id, phone_info(phone_raw, country) p from leads) order by id",
    )
    .await;
    let want = "\
+----+---------------+-------+----------+---------+----------------------+----------------+----------------------+
| id | e164          | valid | possible | country | type                 | national       | error                |
+----+---------------+-------+----------+---------+----------------------+----------------+----------------------+
| 1  | +14155550132  | true  | true     | US      | fixed_line_or_mobile | (415) 555-0132 |                      |
| 2  | +442071838750 | true  | true     | GB      | fixed_line           | 020 7183 8750  |                      |
| 3  | +49301234567  | true  | true     | DE      | fixed_line           | 030 1234567    |                      |
| 4  |               | false | false    |         |                      |                | not_a_number         |
| 5  |               | false | false    |         |                      |                | missing              |
| 6  |               | false | false    |         |                      |                | missing              |
| 7  | +112          | false | false    |         | unknown              | 12             | invalid_number       |
| 8  | +141555501    | false | false    |         | unknown              | 41555501       | invalid_number       |
| 9  |               | false | false    |         |                      |                | invalid_country_code |
+----+---------------+-------+----------+---------+----------------------+----------------+----------------------+";
    assert_eq!(got, want);
}

#[tokio::test]
async fn normalize_phone_is_e164_or_null() {
    let ctx = ctx();
    setup(&ctx).await;
    let got = table(
        &ctx,
        "select id, normalize_phone(phone_raw, country) n from leads where id <= 5 order by id",
    )
    .await;
    let want = "\
+----+---------------+
| id | n             |
+----+---------------+
| 1  | +14155550132  |
| 2  | +442071838750 |
| 3  | +49301234567  |
| 4  |               |
| 5  |               |
+----+---------------+";
    assert_eq!(got, want);
}

#[tokio::test]
async fn literals_one_argument_form_and_string_views() {
    let ctx = ctx();
    let got = table(
        &ctx,
        "select normalize_phone('+44 20 7183 8750') a,
                normalize_phone(arrow_cast('(415) 555-0132', 'Utf8View'), arrow_cast('US', 'Utf8View')) b,
                normalize_phone(arrow_cast('0612345678', 'LargeUtf8'), 'FR') c,
                phone_info(NULL, 'US')['error'] d",
    )
    .await;
    let want = "\
+---------------+--------------+--------------+---------+
| a             | b            | c            | d       |
+---------------+--------------+--------------+---------+
| +442071838750 | +14155550132 | +33612345678 | missing |
+---------------+--------------+--------------+---------+";
    assert_eq!(got, want);
}

#[tokio::test]
async fn wrong_argument_types_are_plan_errors() {
    let ctx = ctx();
    let err = ctx
        .sql("select phone_info(1, 2, 3)")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("phone_info"), "{err}");
}

#[tokio::test]
async fn the_enrichment_shape_parses_each_phone_once() {
    let ctx = ctx();
    setup(&ctx).await;
    let plan = table(
        &ctx,
        "explain with parsed as (select *, phone_info(phone_raw, country) as p from leads)
         select * exclude (p), p['e164'] a, p['valid'] b, p['country'] c, p['type'] d, p['error'] e from parsed",
    )
    .await;
    let physical = plan.split("physical_plan").nth(1).expect("a physical plan");
    assert_eq!(physical.matches("phone_info(").count(), 1, "{plan}");
}

/// Whether each `phone_info` call of `sql`'s optimized plan formats
/// `national`, in the plan's order.
async fn formats_national(ctx: &SessionContext, sql: &str) -> Vec<bool> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
    let mut calls = Vec::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && let Some(udf) = f.func.inner().downcast_ref::<leadflow_udfs::PhoneInfoUdf>()
                {
                    calls.push(udf.formats_national());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .unwrap();
    calls
}

#[tokio::test]
async fn national_is_formatted_only_where_a_plan_may_read_it() {
    let (ctx, _sandbox) = waterfall_ctx(ORION_ALWAYS_HITS).await;
    ctx.sql(
        "create table shipped_leads as select *, cast(id as varchar) lead_id,
                cast(NULL as varchar) organization_id from leads",
    )
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let enrich =
        include_str!("../../../queries/enrich.sql").replace("FROM leads", "FROM shipped_leads");
    assert_eq!(formats_national(&ctx, &enrich).await, [false], "enrich.sql");
    let unread = [
        "select phone_info(phone_raw, country)['e164'] from leads",
        "select p['e164'], p['valid'] from (select *, phone_info(phone_raw, country) p from leads)",
        "select * exclude (p) from (select *, phone_info(phone_raw, country) p from leads) where p['valid']",
    ];
    for sql in unread {
        assert_eq!(formats_national(&ctx, sql).await, [false], "{sql}");
    }
    let read = [
        "select phone_info(phone_raw, country)['national'] from leads",
        "select p['national'] from (select phone_info(phone_raw, country) p from leads)",
        "select q['national'] from (select p q from (select phone_info(phone_raw, country) p from leads))",
        "select p from (select phone_info(phone_raw, country) p from leads)",
        "select * from (select *, phone_info(phone_raw, country) p from leads)",
        "select count(*) from (select phone_info(phone_raw, country) p from leads) group by p",
        "select p['e164'] from (select phone_info(phone_raw, country) p from leads) where p is not null",
        "select phone_info(phone_raw, country) from leads",
        "select (select max(id) from leads l where p['national'] = l.phone_raw)
         from (select phone_info(phone_raw, country) p from leads)",
        // Found by review: a subquery's struct, a union naming columns by
        // position, a write whose plan returns a count.
        "select (select phone_info(phone_raw, country) p from leads limit 1) s",
        "select u['national'] from (select phone_info(phone_raw, country) u from leads
         union all (select phone_info(phone_raw, country) p from leads limit 3))",
        "copy (select phone_info(phone_raw, country) p from leads) to '/nonexistent/p.parquet'",
        "select p['e164'] from (select phone_info(phone_raw, country) p from leads)
         union all select cast(p as varchar) from (select phone_info(phone_raw, country) p from leads)",
    ];
    for sql in read {
        let calls = formats_national(&ctx, sql).await;
        assert!(
            !calls.is_empty() && calls.iter().all(|&f| f),
            "{sql}: {calls:?}"
        );
    }
    // Where it is read, every number that parsed has its national form.
    let got = table(
        &ctx,
        "select count(p['e164']) e, count(p['national']) n
         from (select phone_info(phone_raw, country) p from leads)",
    )
    .await;
    assert!(got.contains("| 2 | 2 |"), "{got}");
}

#[tokio::test]
async fn every_function_is_documented() {
    for udf in leadflow_udfs::all() {
        assert!(
            udf.documentation().is_some(),
            "{} has no documentation",
            udf.name()
        );
    }
    for (name, doc) in leadflow_udfs::documentation() {
        assert!(doc.syntax_example.starts_with(name));
        assert!(doc.sql_example.is_some());
    }
}

/// A session whose `find_phone` asks sandbox providers configured by `toml`.
async fn waterfall_ctx(toml: &str) -> (SessionContext, Sandbox) {
    let (waterfall, sandbox) = super::sandboxed_waterfall(toml).await;
    let ctx = ctx();
    leadflow_udfs::register_waterfall(&ctx, waterfall);
    ctx.sql(
        "create table leads(id int, full_name varchar, email varchar, company_website varchar,
                            country varchar, user_tier int, phone_raw varchar) as values
         (1, 'Ana Silva', 'ana@acme.de', 'acme.de', 'DE', 2, NULL),
         (2, 'Bo Chen', 'bo@acme.de', 'https://www.acme.de', 'DE', 2, '12'),
         (3, 'Ana Silva', 'ana@acme.de', 'acme.de', 'DE', 2, NULL),
         (4, 'Cy Young', 'cy@acme.de', 'acme.de', 'DE', 2, '030 901820'),
         (5, NULL, NULL, NULL, NULL, NULL, NULL),
         (6, 'Di Low', 'di@acme.de', 'acme.de', 'DE', 0, NULL)",
    )
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    (ctx, sandbox)
}

const ORION_ALWAYS_HITS: &str = r#"
[[providers]]
name = "orion"
kind = "orion"
priority = 1
max_requests_per_hour = 1000
min_user_tier = 1
cost_per_call_usd = 0.01
cost_per_hit_usd = 0.04
base_url = "sandbox"

[sandbox]
hit_rate = 1.0
"#;

#[tokio::test]
async fn find_phone_runs_the_waterfall_per_row_in_row_order() {
    let (ctx, sandbox) = waterfall_ctx(ORION_ALWAYS_HITS).await;
    let got = table(
        &ctx,
        "select id, f['provider'] provider, f['status'] status, f['cost_usd'] cost,
                cardinality(f['attempts']) attempts, f['phone_e164'] like '+49%' german
         from (select id, find_phone(full_name, email, company_website, country, user_tier, phone_raw) f
               from leads) order by id",
    )
    .await;
    let want = "\
+----+----------+-------------------+----------+----------+--------+
| id | provider | status            | cost     | attempts | german |
+----+----------+-------------------+----------+----------+--------+
| 1  | orion    | found             | 0.050000 | 1        | true   |
| 2  | orion    | found             | 0.050000 | 1        | true   |
| 3  | orion    | cached            | 0.000000 | 0        | true   |
| 4  |          | skipped_has_phone | 0.000000 | 0        |        |
| 5  |          | not_found         | 0.000000 | 0        |        |
| 6  |          | skipped_tier      | 0.000000 | 1        |        |
+----+----------+-------------------+----------+----------+--------+";
    assert_eq!(got, want);
    let served = sandbox.stats()["orion"].requests;
    assert_eq!(served, 2, "the duplicate lead is asked once");
}

#[tokio::test]
async fn find_phone_reads_the_own_phone_from_phone_info_without_parsing_it_again() {
    let (ctx, sandbox) = waterfall_ctx(ORION_ALWAYS_HITS).await;
    let got = table(
        &ctx,
        "with parsed as (select *, phone_info(phone_raw, country) p from leads)
         select id, p['valid'] valid,
                find_phone(full_name, email, company_website, country, user_tier, p)['status'] status
         from parsed order by id",
    )
    .await;
    let want = "\
+----+-------+-------------------+
| id | valid | status            |
+----+-------+-------------------+
| 1  | false | found             |
| 2  | false | found             |
| 3  | false | cached            |
| 4  | true  | skipped_has_phone |
| 5  | false | not_found         |
| 6  | false | skipped_tier      |
+----+-------+-------------------+";
    assert_eq!(got, want, "the same statuses as with phone_raw");
    assert_eq!(sandbox.stats()["orion"].requests, 2);
    let err = ctx
        .sql("select find_phone(full_name, email, company_website, country, user_tier, named_struct('e164', phone_raw)) from leads")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("argument 6 (phone_raw) must be text or phone_info(...)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_provider_is_a_status_not_a_failed_query() {
    let toml = format!("{ORION_ALWAYS_HITS}error_rate = 1.0\n");
    let (ctx, _) = waterfall_ctx(&toml).await;
    let got = table(
        &ctx,
        "select f['status'] status, count(*) n, sum(cardinality(f['attempts'])) calls
         from (select find_phone(full_name, email, company_website, country, user_tier, phone_raw) f
               from leads where id in (1, 2)) group by 1",
    )
    .await;
    let want = "\
+--------+---+-------+
| status | n | calls |
+--------+---+-------+
| error  | 2 | 6     |
+--------+---+-------+";
    assert_eq!(got, want);
}

#[tokio::test]
async fn without_providers_find_phone_is_not_run() {
    let (ctx, _) = waterfall_ctx("").await;
    let got = table(
        &ctx,
        "select distinct find_phone(full_name, email, company_website, country, user_tier, phone_raw)['status'] s
         from leads",
    )
    .await;
    assert!(got.contains("not_run") && !got.contains("found"), "{got}");
}

#[tokio::test]
async fn phone_line_type_asks_twilio_once_per_distinct_number() {
    let toml = r#"
[[providers]]
name = "twilio"
kind = "twilio"
priority = 1
max_requests_per_hour = 1000
base_url = "sandbox"
"#;
    let (ctx, sandbox) = waterfall_ctx(toml).await;
    let us = leadflow_phone::example_number_e164(leadflow_phone::Region::US).unwrap();
    let got = table(
        &ctx,
        &format!(
            "select n, t['line_type'] is not null described, t['carrier_name'] like 'Sandbox %' carrier,
                    t['status'] status
             from (select n, phone_line_type(n) t from (values ('{us}'), ('{us}'), ('+1 555 0100'), (NULL)) v(n))
             order by n nulls last"
        ),
    )
    .await;
    // The number's first row paid for it; the second shares its answer.
    let us_rows: Vec<&str> = got.lines().filter(|l| l.contains(us.as_str())).collect();
    assert_eq!(us_rows.len(), 2, "{got}");
    assert!(
        us_rows.iter().all(|l| l.matches("| true ").count() == 2),
        "{got}"
    );
    assert!(us_rows.iter().any(|l| l.contains("| found ")), "{got}");
    assert!(us_rows.iter().any(|l| l.contains("| cached ")), "{got}");
    assert!(got.contains("no_phone"), "a NULL number says so: {got}");
    let invalid = got.lines().find(|l| l.contains("+1 555 0100")).unwrap();
    assert!(
        invalid.contains("false") && invalid.contains("unknown_number"),
        "an invalid number is not described: {got}"
    );
    assert_eq!(sandbox.stats()["twilio"].requests, 2);
}

#[tokio::test]
async fn find_phone_argument_types_are_checked_when_planning() {
    let (ctx, _) = waterfall_ctx(ORION_ALWAYS_HITS).await;
    let err = ctx
        .sql("select find_phone(full_name, email, company_website, country, 'gold', phone_raw) from leads")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("user_tier") && err.contains("integer"),
        "{err}"
    );
}

#[tokio::test]
async fn a_paid_call_under_a_condition_is_refused_with_the_reason() {
    let (ctx, sandbox) = waterfall_ctx(ORION_ALWAYS_HITS).await;
    let f = "find_phone(full_name, email, company_website, country, user_tier, phone_raw)";
    for (sql, construct) in [
        (
            format!("select case when phone_raw is null then {f}['phone_e164'] end from leads"),
            "CASE",
        ),
        (
            format!(
                "select case when id = 1 then 'a' when {f}['status'] = 'found' then 'b' end from leads"
            ),
            "CASE",
        ),
        (
            format!("select case when id = 1 then 'a' else {f}['phone_e164'] end from leads"),
            "CASE",
        ),
        (
            format!("select coalesce(phone_raw, {f}['phone_e164']) from leads"),
            "COALESCE",
        ),
        (
            format!("select nvl(phone_raw, {f}['phone_e164']) from leads"),
            "NVL",
        ),
        (
            format!("select id from leads where phone_raw is null and {f}['status'] = 'found'"),
            "AND",
        ),
        (
            format!("select phone_raw is not null or {f}['status'] = 'found' from leads"),
            "OR",
        ),
        (
            format!(
                "select * from (select id, case when id > 2 then {f} end f from leads) where id < 5"
            ),
            "CASE",
        ),
    ] {
        let err = match ctx.sql(&sql).await {
            Ok(df) => df.collect().await.map(|_| ()).unwrap_err(),
            Err(e) => e,
        }
        .to_string();
        assert!(
            err.contains(&format!("find_phone is called under {construct}"))
                && err.contains("every row")
                && err.contains("WHERE"),
            "{sql}\n{err}"
        );
    }
    assert_eq!(sandbox.stats().values().map(|s| s.requests).sum::<u64>(), 0);

    // The unconditional forms stay allowed: the call itself, a condition
    // over its result, and a WHERE that picks the rows.
    for sql in [
        format!("select case when {f}['status'] = 'found' then 1 else 0 end from leads"),
        format!("select coalesce({f}['phone_e164'], phone_raw) from leads"),
        format!("select {f}['status'] from (select * from leads where phone_raw is null)"),
    ] {
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    }
}

/// A batch without attempts shares one empty struct; it must be the struct
/// a batch with attempts has, so `find_phone`'s list and `provider_usage`'s
/// columns have one type whichever batch they come from.
#[test]
fn attempts_with_none_appended_have_the_type_of_attempts_built() {
    use datafusion::arrow::array::Array;
    use datafusion::arrow::datatypes::DataType;
    use leadflow_udfs::AttemptColumns;
    use leadflow_waterfall::{Attempt, Outcome, Policy};

    let none = AttemptColumns::new(64).finish().unwrap();
    assert_eq!(none.len(), 0);
    let mut one = AttemptColumns::new(0);
    one.append(&Attempt {
        provider: "orion".into(),
        attempt: 1,
        outcome: Outcome::Hit,
        http_status: Some(200),
        cost_micros: 150_000,
        latency_ms: 12,
        started_at: 1_700_000_000_000_000,
        error: None,
        policy: Some(Policy::Priority),
    });
    let one = one.finish().unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(none.data_type(), one.data_type());
    assert_eq!(
        none.data_type(),
        &DataType::Struct(leadflow_schemas::attempt_fields())
    );
    // Shared, and still empty after another batch used it.
    assert_eq!(AttemptColumns::new(1).finish().unwrap().len(), 0);
}
