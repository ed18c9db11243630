//! `data/automata.bin` is what the metadata gives: regenerate it with
//! `LEADFLOW_WRITE_AUTOMATA=1 cargo test --release -p leadflow-phone --test automata`
//! after `data/metadata.bin` changes.

use std::path::Path;

#[test]
fn the_committed_automata_are_the_metadatas() {
    let generated = leadflow_phone::generate_automata().expect("every pattern compiles");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/automata.bin");
    if std::env::var_os("LEADFLOW_WRITE_AUTOMATA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale ({} bytes, the metadata gives {}): rerun with LEADFLOW_WRITE_AUTOMATA=1",
        path.display(),
        committed.len(),
        generated.len()
    );
}
