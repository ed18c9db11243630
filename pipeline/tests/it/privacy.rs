//! `leadflow export-subject`: every row an output holds about one person,
//! and nobody else's.

use std::path::Path;

use leadflow_pipeline::config::LeadflowConfig;

use super::support::{config, example, query, rows, run};

#[tokio::test]
async fn a_subjects_export_holds_their_leads_calls_and_rejects_and_nobody_elses() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let mut cfg = config(&example(), &out);
    cfg.providers = LeadflowConfig::load(Path::new(&format!(
        "{}/../examples/leadflow.toml",
        env!("CARGO_MANIFEST_DIR")
    )))
    .unwrap();
    run(cfg).await;
    // A subject with provider calls: the first lead that was looked up.
    let subject = rows(
        &query(
            &out,
            "select email, count(*) over (partition by lower(trim(email))) from enriched_leads
             where lookup_attempts > 0 and email is not null order by lead_id limit 1",
        )
        .await,
    );
    let (email, leads) = (
        subject[0][0].clone(),
        subject[0][1].parse::<usize>().unwrap(),
    );
    let calls: usize = rows(
        &query(
            &out,
            &format!(
                "select count(*) from provider_usage where lead_id in (
                   select lead_id from enriched_leads where lower(trim(email)) = lower(trim('{email}')))"
            ),
        )
        .await,
    )[0][0]
        .parse()
        .unwrap();
    assert!(calls > 0);

    // Asked in another case and with spaces, as a person writes it.
    let asked = format!("  {}  ", email.to_uppercase());
    let doc = leadflow_pipeline::privacy::export_subject(&out, &asked)
        .await
        .unwrap();
    let table = |name: &str| doc[name].as_array().unwrap().clone();
    assert_eq!(doc["subject"]["email"], email.trim().to_lowercase());
    assert_eq!(table("enriched_leads").len(), leads);
    for lead in table("enriched_leads") {
        assert_eq!(
            lead["email"].as_str().unwrap().trim().to_lowercase(),
            email.trim().to_lowercase()
        );
    }
    assert_eq!(table("provider_usage").len(), calls, "every call, no other");
    let ids: Vec<String> = table("enriched_leads")
        .iter()
        .map(|l| l["lead_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        table("provider_usage")
            .iter()
            .all(|c| ids.contains(&c["lead_id"].as_str().unwrap().to_string()))
    );
    assert!(table("rejects").is_empty());
    // What an erasure of the same email would remove, table by table.
    use leadflow_pipeline::privacy::forget::{ForgetOptions, Subjects, forget};
    let mut subjects = Subjects::default();
    subjects.email(&asked).unwrap();
    let options = ForgetOptions {
        dry_run: true,
        ..Default::default()
    };
    let location = leadflow_pipeline::storage::open(&out).unwrap();
    let would = forget(&location, &subjects, &options).await.unwrap();
    for name in ["enriched_leads", "provider_usage", "rejects"] {
        assert_eq!(would.rows_removed[name], table(name).len() as u64, "{name}");
    }

    // A person known only from a line that could not be read.
    let doc = leadflow_pipeline::privacy::export_subject(&out, "gold@example.com")
        .await
        .unwrap();
    let rejects = doc["rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 1, "{doc}");
    assert!(
        rejects[0]["raw"]
            .as_str()
            .unwrap()
            .contains("gold@example.com")
    );
    assert!(doc["enriched_leads"].as_array().unwrap().is_empty());

    // Nobody: empty tables, not an error; not an email: an error.
    let doc = leadflow_pipeline::privacy::export_subject(&out, "nobody@nowhere.example")
        .await
        .unwrap();
    assert!(
        ["enriched_leads", "provider_usage", "rejects"]
            .iter()
            .all(|t| doc[*t].as_array().unwrap().is_empty())
    );
    let err = leadflow_pipeline::privacy::export_subject(&out, "ana")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("email"), "{err}");
}
