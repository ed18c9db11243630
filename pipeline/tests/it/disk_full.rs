//! A full disk is the machine's fault (exit 3), whichever write finds it.
//! Needs a tiny file system: a 16 KiB tmpfs, mounted when the test may
//! mount (root in a container that allows it); otherwise the test says so
//! and `error::tests` still pins the classification.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::support::example;

/// A tmpfs of `size` at a fresh directory, unmounted when dropped.
struct TinyDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .ok()?;
        mounted.status.success().then_some(Self { path, _dir: dir })
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn run_into(out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["run", "--no-progress", "--input", &example(), "--out"])
        .arg(out)
        .env_remove("LEADFLOW_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn a_run_onto_a_full_disk_exits_3_saying_the_disk_is_full() {
    let Some(disk) = TinyDisk::mount("16k") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root, or mount not permitted)");
        return;
    };
    let out = run_into(&disk.path.join("out"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the disk is full"), "{stderr}");
}
