//! CSV as people really export it.

use super::support::{config, query, rows, run, run_err, write};

#[tokio::test]
async fn bom_crlf_quotes_and_embedded_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "\u{feff}LEAD_ID,Full Name,Email,Company,Phone,country,User_Tier,notes\r\n\
               a1,\"Smith, Ann\",ann@x.com,\"Acme \"\"Rockets\"\"\",(415) 555-0132,us,1,\"line one\r\nline two\"\r\n\
               a2,Bob,bob@y.com,Globex,020 7183 8750,United Kingdom,2,\r\n";
    let input = write(dir.path(), "leads.csv", csv.as_bytes());
    let out = dir.path().join("out").display().to_string();
    let summary = run(config(&input, &out)).await;
    assert_eq!(
        (summary.records_read, summary.leads_written, summary.rejects),
        (2, 2, 0)
    );

    let got = rows(&query(&out, "select lead_id, full_name, company, country, phone_e164, phone_valid, user_tier, notes from enriched_leads order by lead_id").await);
    assert_eq!(
        got,
        vec![
            vec![
                "a1",
                "Smith, Ann",
                "Acme \"Rockets\"",
                "US",
                "+14155550132",
                "true",
                "1",
                "line one\r\nline two"
            ],
            vec![
                "a2",
                "Bob",
                "Globex",
                "GB",
                "+442071838750",
                "true",
                "2",
                ""
            ],
        ]
    );
}

#[tokio::test]
async fn broken_rows_become_rejects_with_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = b"lead_id,email,phone_raw,country,user_tier\n\
                    ok1,a@x.com,+1 415 555 0132,US,1\n\
                    bad1,b@x.com,+1 415 555 0133\n\
                    bad2,c@x.com,+1 415 555 0134,US,gold\n"
        .to_vec();
    csv.extend_from_slice(b"bad3,d@x.com,+1 415 555 \xff0135,US,1\n");
    csv.extend_from_slice(b"ok2,e@x.com,+44 20 7183 8750,GBR,3\n");
    let input = write(dir.path(), "leads.csv", &csv);
    let out = dir.path().join("out").display().to_string();
    let summary = run(config(&input, &out)).await;

    assert_eq!(summary.records_read, 5);
    assert_eq!(
        summary.leads_written + summary.rejects,
        summary.records_read,
        "nothing lost"
    );
    assert_eq!(summary.rejects, 3);
    let got = rows(&query(&out, "select line, reason from rejects order by line").await);
    assert_eq!(
        got,
        vec![
            vec![
                "3".to_string(),
                "expected 5 fields as in the header, found 3".to_string()
            ],
            vec![
                "4".to_string(),
                "user_tier: `gold` is not a whole number".to_string()
            ],
            vec![
                "5".to_string(),
                "phone_raw: not valid UTF-8 (byte 11 of the field)".to_string()
            ],
        ]
    );
    let raw = rows(
        &query(
            &out,
            "select raw, source like '%leads.csv' from rejects where line = 3",
        )
        .await,
    );
    assert_eq!(
        raw,
        vec![vec![
            "bad1,b@x.com,+1 415 555 0133".to_string(),
            "true".to_string()
        ]]
    );
    let good = rows(&query(&out, "select lead_id from enriched_leads order by 1").await);
    assert_eq!(good, vec![vec!["ok1"], vec!["ok2"]]);
}

#[tokio::test]
async fn mapping_default_country_semicolons_and_country_names() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "Contact;Mobile;Land;Tier\n\
               Jo;030 1234567;Deutschland;1\n\
               Al;(415) 555-0132;;2\n\
               Mo;06 12 34 56 78;fra;1\n";
    let input = write(dir.path(), "crm-export.csv", csv.as_bytes());
    let out = dir.path().join("out").display().to_string();
    let mut cfg = config(&input, &out);
    cfg.source.mapping = leadflow_pipeline::lead::FieldMapping::parse(&[
        "phone_raw=Mobile".into(),
        "country=land".into(),
        "full_name=Contact".into(),
    ])
    .unwrap();
    cfg.source.options.default_country = Some("US");
    run(cfg).await;
    let got = rows(&query(&out, "select full_name, country, phone_e164, phone_valid, user_tier from enriched_leads order by full_name").await);
    assert_eq!(
        got,
        vec![
            vec!["Al", "US", "+14155550132", "true", "2"],
            vec!["Jo", "DE", "+49301234567", "true", "1"],
            vec!["Mo", "FR", "+33612345678", "true", "1"],
        ]
    );
}

#[tokio::test]
async fn lead_id_is_a_stable_hash_when_absent() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "email,phone_raw,country\nAnn@X.com,+14155550132,US\nann@x.com,+14155550132,US\n";
    let input = write(dir.path(), "leads.csv", csv.as_bytes());
    let out = dir.path().join("out").display().to_string();
    run(config(&input, &out)).await;
    let got = rows(&query(&out, "select distinct lead_id from enriched_leads").await);
    assert_eq!(got.len(), 1, "email case does not change the id: {got:?}");
    assert!(
        got[0][0].starts_with("lf-") && got[0][0].len() == 19,
        "{got:?}"
    );
}

/// Columns named like our outputs, repeated or blank: every one is kept,
/// under a name of its own, and ours win.
#[tokio::test]
async fn columns_named_like_ours_repeated_or_blank_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "lead_id,phone_raw,country,phone_e164,run_id,dt,notes,notes,,p\n\
               a1,(415) 555-0132,US,+10000000000,their-run,2020-01-01,one,two,blank,pee\n";
    let input = write(dir.path(), "leads.csv", csv.as_bytes());
    let out = dir.path().join("out").display().to_string();
    let summary = run(config(&input, &out)).await;
    assert_eq!((summary.leads_written, summary.rejects), (1, 0));
    let got = rows(
        &query(
            &out,
            "select phone_e164, input_phone_e164, run_id, input_run_id, input_dt, notes, notes_2, column_9, input_p from enriched_leads",
        )
        .await,
    );
    assert_eq!(
        got,
        vec![vec![
            "+14155550132",
            "+10000000000",
            "test-run",
            "their-run",
            "2020-01-01",
            "one",
            "two",
            "blank",
            "pee"
        ]]
    );

    // leadflow reads its own output back, and maps no column it lacks.
    let again = dir.path().join("again").display().to_string();
    let enriched = format!("{out}/enriched_leads");
    let summary = run(config(&enriched, &again)).await;
    assert_eq!((summary.leads_written, summary.rejects), (1, 0));
    let got = rows(
        &query(
            &again,
            "select phone_e164, input_phone_e164, input_input_phone_e164 from enriched_leads",
        )
        .await,
    );
    // Each generation adds an `input_`: the first input's value keeps its name.
    assert_eq!(
        got,
        vec![vec!["+14155550132", "+10000000000", "+14155550132"]]
    );

    let mut cfg = config(&input, &dir.path().join("bad").display().to_string());
    cfg.source.mapping =
        leadflow_pipeline::lead::FieldMapping::parse(&["phone_raw=Nope".into()]).unwrap();
    let err = run_err(cfg).await;
    assert!(
        err.contains("--map phone_raw=nope: no such column") && err.contains("`phone_raw`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_reject_reason_quotes_a_huge_field_cut_and_raw_keeps_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    // 2 MB of two-byte characters: the cut must fall between characters.
    let tier = "é".repeat(1_000_000);
    let csv = format!("lead_id,email,user_tier\nok1,a@x.com,1\nbig,b@x.com,{tier}\n");
    let input = write(dir.path(), "leads.csv", csv.as_bytes());
    let out = dir.path().join("out").display().to_string();
    let summary = run(config(&input, &out)).await;
    assert_eq!((summary.leads_written, summary.rejects), (1, 1));
    let got = rows(
        &query(
            &out,
            "select reason, length(raw), raw = concat('big,b@x.com,', repeat('é', 1000000)) from rejects",
        )
        .await,
    );
    let reason = &got[0][0];
    assert_eq!(
        reason,
        &format!(
            "user_tier: `{}…` (1000000 characters) is not a whole number",
            "é".repeat(200)
        )
    );
    assert_eq!(got[0][1], (12 + 1_000_000).to_string());
    assert_eq!(got[0][2], "true", "the raw record is kept whole");
}

#[tokio::test]
async fn a_record_longer_than_a_lead_can_be_is_named_not_read_into_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    // A quote never closed on line 3: the rest of the file (17 MiB) would
    // be one field. The run stops, naming the file and the line, and the
    // output is as it was.
    let mut csv =
        String::from("lead_id,email,notes\nok1,a@x.com,fine\nbad,b@x.com,\"never closed\n");
    csv.push_str(&"x,y,z\n".repeat(17 << 20 >> 2));
    let input = write(dir.path(), "leads.csv", csv.as_bytes());
    let err = run_err(config(&input, &out)).await;
    assert!(
        err.contains("leads.csv") && err.contains("line 3") && err.contains("closing quote"),
        "{err}"
    );
    assert!(!std::path::Path::new(&out).join("enriched_leads").exists());

    // In NDJSON a line that long is a reject (its first KiB kept), and the
    // lines around it are leads.
    let mut ndjson = String::from(
        "{\"lead_id\":\"a\",\"email\":\"a@x.com\"}\n{\"lead_id\":\"huge\",\"notes\":\"",
    );
    ndjson.push_str(&"z".repeat(17 << 20));
    ndjson.push_str("\"}\n{\"lead_id\":\"b\",\"email\":\"b@x.com\"}\n");
    let input = write(dir.path(), "leads.ndjson", ndjson.as_bytes());
    let summary = run(config(&input, &out)).await;
    assert_eq!((summary.leads_written, summary.rejects), (2, 1));
    let got = rows(
        &query(
            &out,
            "select line, length(raw) <= 1024, reason from rejects",
        )
        .await,
    );
    assert_eq!(got[0][0], "2");
    assert_eq!(got[0][1], "true");
    assert!(got[0][2].contains("more than a lead can be"), "{got:?}");
}

#[tokio::test]
async fn a_crlf_files_rejects_name_the_line_they_are_on() {
    // Windows exports end lines with CRLF. Until the reader counted lines
    // itself, every reject after the header was named one line too early.
    let dir = tempfile::tempdir().unwrap();
    let csv = "lead_id,email,notes,user_tier\r\n\
               ok1,a@x.com,\"two\r\nlines\",1\r\n\
               \r\n\
               bad1,b@x.com,short\r\n\
               bad2,c@x.com,plain,gold\r\n\
               ok2,d@x.com,,2\r\n";
    let input = write(dir.path(), "leads.csv", csv.as_bytes());
    let out = dir.path().join("out").display().to_string();
    let summary = run(config(&input, &out)).await;
    assert_eq!((summary.leads_written, summary.rejects), (2, 2));
    let got = rows(&query(&out, "select line, raw from rejects order by line").await);
    assert_eq!(
        got,
        vec![
            vec!["5".to_string(), "bad1,b@x.com,short".to_string()],
            vec!["6".to_string(), "bad2,c@x.com,plain,gold".to_string()],
        ]
    );
}
