//! Resolving what the user named into a sorted list of input files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};
use crate::storage;

/// A file format leadflow reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-, semicolon-, tab- or pipe-separated text with a header row.
    Csv,
    /// One JSON object per line (`.ndjson`, `.jsonl`, `.json`).
    Ndjson,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format a file name's extension says, if any.
    pub fn from_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        let ext = lower.rsplit('.').next()?;
        match ext {
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// One file to read.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The path or URL as shown in messages and rejects.
    pub name: String,
    pub format: Format,
    pub size: u64,
    pub(crate) place: Place,
}

#[derive(Debug, Clone)]
pub(crate) enum Place {
    Local(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
    },
}

/// Resolves `spec` (a file, a directory, a glob or `s3://bucket/prefix`) into
/// input files sorted by name. With `format` given, every file is read as it;
/// otherwise files whose extension names no known format are skipped.
pub async fn resolve(spec: &str, format: Option<Format>) -> Result<Vec<InputFile>> {
    let files = if storage::is_s3(spec) {
        resolve_s3(spec, format).await?
    } else {
        resolve_local(spec, format)?
    };
    if files.is_empty() {
        return Err(Error::NoInput(spec.to_string()));
    }
    Ok(files)
}

fn pick_format(name: &str, forced: Option<Format>) -> Option<Format> {
    forced.or_else(|| Format::from_name(name))
}

fn resolve_local(spec: &str, forced: Option<Format>) -> Result<Vec<InputFile>> {
    let path = Path::new(spec);
    let mut paths = Vec::new();
    if path.is_file() {
        let format = pick_format(spec, forced).ok_or_else(|| {
            Error::Usage(format!(
                "{spec}: cannot tell the format from the extension; pass --format csv|ndjson|parquet"
            ))
        })?;
        paths.push((path.to_path_buf(), format));
    } else if path.is_dir() {
        walk(path, forced, &mut paths, &mut HashSet::new())?;
    } else if path.exists() {
        return Err(Error::Usage(format!(
            "{spec} is not a regular file or a directory (a pipe or a device?): \
             leadflow reads files; save the data to one first"
        )));
    } else if spec.contains(['*', '?', '[']) {
        let matches = glob::glob(spec).map_err(|e| Error::Usage(format!("glob `{spec}`: {e}")))?;
        for entry in matches {
            let p = entry.map_err(|e| Error::io(e.path().to_path_buf(), e.into()))?;
            if let (true, Some(format)) = (p.is_file(), pick_format(&p.to_string_lossy(), forced)) {
                paths.push((p, format));
            }
        }
    } else {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    // Each file once, by its real path: links to one file (or to a directory
    // read already) would read its leads twice.
    let mut seen = HashSet::new();
    paths.retain(|(p, _)| {
        let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        let first = seen.insert(real);
        if !first {
            tracing::warn!(file = %p.display(), "skipped: the same file as one read already (a link)");
        }
        first
    });
    paths
        .into_iter()
        .map(|(p, format)| {
            let size = p.metadata().map_err(|e| Error::io(&p, e))?.len();
            Ok(InputFile {
                name: p.display().to_string(),
                format,
                size,
                place: Place::Local(p),
            })
        })
        .collect()
}

/// Files under `dir`, following links to directories but never into one
/// already walked (`walked`: real paths), so a link loop ends.
fn walk(
    dir: &Path,
    forced: Option<Format>,
    out: &mut Vec<(PathBuf, Format)>,
    walked: &mut HashSet<PathBuf>,
) -> Result<()> {
    let real = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if !walked.insert(real) {
        tracing::warn!(dir = %dir.display(), "skipped: a link to a directory read already");
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(['.', '_']) {
            continue;
        }
        if path.is_dir() {
            walk(&path, forced, out, walked)?;
        } else if let Some(format) = pick_format(&name, forced) {
            out.push((path, format));
        }
    }
    Ok(())
}

async fn resolve_s3(spec: &str, forced: Option<Format>) -> Result<Vec<InputFile>> {
    let location = storage::open(spec)?;
    let store = location.store.clone();
    let bucket = location.base_url.as_str().trim_end_matches('/').to_string();
    // An exact object first; otherwise everything under the prefix.
    if !location.prefix.as_ref().is_empty()
        && let Ok(meta) = store.head(&location.prefix).await
    {
        let name = format!("{bucket}/{}", meta.location);
        let format = pick_format(&name, forced).ok_or_else(|| {
            Error::Usage(format!("{name}: cannot tell the format; pass --format"))
        })?;
        return Ok(vec![InputFile {
            name,
            format,
            size: meta.size,
            place: Place::Object {
                store,
                path: meta.location,
            },
        }]);
    }
    let prefix = (!location.prefix.as_ref().is_empty()).then_some(&location.prefix);
    let mut metas: Vec<_> = store.list(prefix).try_collect().await?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let depth = location.prefix.parts().count();
    Ok(metas
        .into_iter()
        // Like the local walk: `_` and `.` names (bookkeeping, temporaries) are not data.
        .filter(|meta| {
            !meta
                .location
                .parts()
                .skip(depth)
                .any(|p| p.as_ref().starts_with(['_', '.']))
        })
        .filter_map(|meta| {
            let name = format!("{bucket}/{}", meta.location);
            let format = pick_format(&name, forced)?;
            Some(InputFile {
                name,
                format,
                size: meta.size,
                place: Place::Object {
                    store: store.clone(),
                    path: meta.location,
                },
            })
        })
        .collect())
}

/// Where a run writes, to tell its files from input: a local directory
/// (canonical, resolved once) or an `s3://` prefix.
pub(crate) enum OutputPlace {
    Local(Option<PathBuf>),
    Object(String),
}

impl OutputPlace {
    pub(crate) fn new(out: &str) -> Self {
        if storage::is_s3(out) {
            OutputPlace::Object(format!("{}/", out.trim_end_matches('/')))
        } else {
            OutputPlace::Local(Path::new(out).canonicalize().ok())
        }
    }

    /// Whether `file` lies under the output.
    pub(crate) fn holds(&self, file: &InputFile) -> bool {
        match (self, &file.place) {
            (OutputPlace::Local(Some(out)), Place::Local(path)) => {
                path.canonicalize().is_ok_and(|p| p.starts_with(out))
            }
            (OutputPlace::Object(prefix), Place::Object { .. }) => file.name.starts_with(prefix),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::from_name("a/B.CSV"), Some(Format::Csv));
        assert_eq!(Format::from_name("x.jsonl"), Some(Format::Ndjson));
        assert_eq!(Format::from_name("x.parquet"), Some(Format::Parquet));
        assert_eq!(Format::from_name("x.xlsx"), None);
    }

    #[test]
    fn each_file_is_read_once_by_its_real_path_and_link_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.csv"), "email\na@x.com\n").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/c.csv"), "email\nc@x.com\n").unwrap();
        // A second name for a file, and three loops: to the root, to a
        // parent, and two links to each other's directories.
        std::os::unix::fs::symlink(root.join("a.csv"), root.join("b.csv")).unwrap();
        std::os::unix::fs::symlink(root, root.join("loop")).unwrap();
        std::os::unix::fs::symlink(root, root.join("sub/up")).unwrap();
        std::fs::create_dir(root.join("p")).unwrap();
        std::fs::create_dir(root.join("q")).unwrap();
        std::os::unix::fs::symlink(root.join("q"), root.join("p/to_q")).unwrap();
        std::os::unix::fs::symlink(root.join("p"), root.join("q/to_p")).unwrap();

        let files = resolve_local(&root.display().to_string(), None).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                Path::new(&f.name)
                    .strip_prefix(root)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a.csv", "sub/c.csv"]);
    }
}
