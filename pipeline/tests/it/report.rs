//! `leadflow report` over the analytics fixture, opened in a real headless
//! Chromium: no console output, every chart drawn, the numbers the queries
//! return (pinned in `analytics.rs`) shown as a reader sees them.

use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

use crate::support::analytics_fixture;

/// The browser: `$CHROMIUM`, else the first of Debian's and others' names
/// on PATH (`scripts/test.sh` installs Debian's `chromium` where missing).
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return path.into();
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return String::from_utf8_lossy(&out.stdout).trim().into();
        }
    }
    panic!("no Chromium: install Debian's `chromium` (scripts/test.sh does) or set CHROMIUM");
}

/// Runs headless Chromium on `page` with `args`; returns stdout and stderr.
fn browse(page: &Path, profile: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The text of each cell of table `id`, row by row (header row excluded).
fn table(dom: &str, id: &str) -> Vec<Vec<String>> {
    let start = dom.find(&format!("<table id=\"{id}\">")).expect("table");
    let end = start + dom[start..].find("</table>").unwrap();
    let body = &dom[start..end];
    let row = Regex::new(r"(?s)<tr>(.*?)</tr>").unwrap();
    let cell = Regex::new(r"<td[^>]*>([^<]*)</td>").unwrap();
    row.captures_iter(body)
        .map(|r| {
            cell.captures_iter(&r[1])
                .map(|c| unescape(&c[1]))
                .collect::<Vec<_>>()
        })
        .filter(|cells| !cells.is_empty())
        .collect()
}

/// The two groups of each match of `pattern` in `dom`.
fn captured_pairs<'a>(dom: &'a str, pattern: &str) -> Vec<(&'a str, &'a str)> {
    Regex::new(pattern)
        .unwrap()
        .captures_iter(dom)
        .map(|c| {
            let (a, b) = (c.get(1).unwrap(), c.get(2).unwrap());
            (a.as_str(), b.as_str())
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[test]
fn the_report_opens_in_chromium_with_every_chart_drawn_and_the_numbers_of_the_queries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("out");
    analytics_fixture(&data);
    let page = dir.path().join("report.html");
    let status = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["report", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&page)
        .status()
        .unwrap();
    assert!(status.success());
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing for the browser to fetch.
    for outside in ["src=", "href=", "http://", "https://", "@import"] {
        let outside_svg_namespace = html.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !outside_svg_namespace.contains(outside),
            "the page refers to {outside}"
        );
    }

    let (dom, log) = browse(&page, &dir.path().join("profile"), &["--dump-dom"]);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "the page wrote to the console: {console:#?}"
    );
    assert!(
        dom.contains("data-ready=\"true\""),
        "the script did not finish"
    );

    // Every chart drew a mark per row.
    let drawn = captured_pairs(&dom, r#"data-chart="(\w+)" data-drawn="([^"]*)""#);
    assert_eq!(
        drawn,
        [
            ("funnel", "8"),
            ("spend", "5"),
            ("hit_rate", "5"),
            ("line_types", "4"),
            ("carriers", "4"),
            ("rejects", "3"),
        ]
    );
    assert_eq!(
        dom.matches("<circle").count(),
        10,
        "a point per provider and day, in two charts"
    );
    assert_eq!(dom.matches("<rect").count(), 8 + 4 + 4 + 3, "a bar per row");

    // The cards, as the summary query returns them (analytics.rs).
    let cards = captured_pairs(
        &dom,
        r#"<div class="card" data-field="(\w+)"><div class="label">[^<]*</div><div class="value">([^<]*)</div>"#,
    );
    assert_eq!(
        cards,
        [
            ("leads", "10"),
            ("valid_own_phones", "2"),
            ("looked_up", "7"),
            ("found", "3"),
            ("hit_rate", "42.9%"),
            ("from_cache", "1"),
            ("line_type_known", "4"),
            ("line_type_not_asked", "1"),
            ("line_type_unknown_number", "1"),
            ("spend_usd", "$0.3800"),
            ("lookup_spend_usd", "$0.3800"),
            ("cost_per_found_usd", "$0.1267"),
            ("rejects", "4"),
        ]
    );

    let scorecard = table(&dom, "scorecard");
    assert_eq!(
        scorecard,
        [
            [
                "astra",
                "2026-11-25",
                "3",
                "0",
                "0.0%",
                "1",
                "1",
                "1",
                "200 ms",
                "290 ms",
                "$0.00",
                "–"
            ],
            [
                "nimbus",
                "2026-11-25",
                "1",
                "1",
                "100.0%",
                "0",
                "0",
                "0",
                "400 ms",
                "400 ms",
                "$0.2500",
                "$0.2500"
            ],
            [
                "orion",
                "2026-11-25",
                "3",
                "1",
                "33.3%",
                "0",
                "0",
                "0",
                "120 ms",
                "138 ms",
                "$0.0460",
                "$0.0460"
            ],
            [
                "astra",
                "2026-11-26",
                "1",
                "1",
                "100.0%",
                "0",
                "0",
                "0",
                "250 ms",
                "250 ms",
                "$0.0800",
                "$0.0800"
            ],
            [
                "orion",
                "2026-11-26",
                "3",
                "0",
                "0.0%",
                "2",
                "0",
                "1",
                "160 ms",
                "2,716 ms",
                "$0.0040",
                "–"
            ],
        ]
        .map(|r| r.map(String::from).to_vec())
    );
    let rejects = table(&dom, "rejects");
    assert_eq!(rejects.len(), 3);
    assert_eq!(rejects[0][..4], ["leads-a.csv", "user_tier", "2", "4"]);
    assert_eq!(rejects[0][4], "user_tier: `gold` is not a whole number");
    assert_eq!(table(&dom, "coverage").len(), 6);

    // A screenshot for people to look at: a test artifact, not committed.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &page,
        &dir.path().join("profile"),
        &[
            "--window-size=1280,2600",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "an empty screenshot"
    );
    eprintln!("report screenshot: {}", shot.display());
}

#[test]
fn a_data_path_with_placeholders_and_markup_is_shown_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir
        .path()
        .join("out {{data}} <script>alert(1)</script> {{title}}");
    analytics_fixture(&data);
    let page = dir.path().join("report.html");
    let output = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["report", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&page)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    let title = html
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(title, _)| title)
        .expect("a title");
    let escaped = data
        .display()
        .to_string()
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert_eq!(title, format!("leadflow report · {escaped}"));
    assert_eq!(
        html.matches("<script>alert(1)").count(),
        0,
        "markup is escaped"
    );
    // The data is in the page once, in its script element.
    assert_eq!(html.matches(r#"<script id="report-data""#).count(), 1);
}
