//! The phone UDFs through real SQL on a SessionContext.

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;

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

#[tokio::test]
async fn every_function_is_documented() {
    for udf in leadflow_udfs::all() {
        let doc = udf
            .documentation()
            .unwrap_or_else(|| panic!("{} has no documentation", udf.name()));
        assert!(doc.syntax_example.starts_with(udf.name()));
        assert!(doc.sql_example.is_some());
    }
}
