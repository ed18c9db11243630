//! An output's tables as its newest version: the object store `leadflow sql`
//! reads them through.
//!
//! DataFusion lists a table's directory and reads what it finds. Through
//! this store a listing shows exactly the files of the log's newest version
//! (read again at every listing, so a long session sees new commits), plus
//! the stream's committed cuts that no compaction has rewritten (see
//! [`super::Cover`]): not the files a commit under way has moved
//! in early, nor those it has yet to delete. A file of that version still in
//! its writer's staging (the writer is moving it, or died doing so) is
//! listed under its table path and read from staging. Nothing is written:
//! a reader needs no write access. A directory with neither log nor
//! pre-log manifest is read as it is.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::Snapshot;
use crate::storage::Location;
use crate::stream::ledger::StreamCommits;

/// What one listing saw: the files of the version read, and where those
/// still staged are.
#[derive(Debug, Default)]
struct View {
    /// No commit log nor pre-log manifest: a plain directory of Parquet
    /// (or a stream's output alone), read as it is.
    plain: bool,
    files: HashSet<String>,
    staged: HashMap<String, ObjectPath>,
    stream: StreamCommits,
    /// Stream files whose rows a compaction rewrote.
    covers: super::log::Covers,
    /// The version after the one read: once it exists, this view is old.
    next: u64,
}

impl View {
    async fn read(location: &Location) -> crate::error::Result<View> {
        let snapshot = Snapshot::read(location).await?;
        let mut staged = HashMap::new();
        for run in &snapshot.runs {
            for rel in &run.files {
                if let Some(path) = run.staged_path(rel) {
                    staged.insert(rel.clone(), location.child(&path));
                }
            }
        }
        if let Some(manifest) = &snapshot.legacy
            && let Some(publishing) = &manifest.publishing
            && let Some(run) = manifest
                .runs
                .iter()
                .find(|r| r.write_id == publishing.write_id)
        {
            for rel in &run.files {
                staged.insert(
                    rel.clone(),
                    location.child(&format!("{}/{}/{rel}", super::STAGING, publishing.write_id)),
                );
            }
        }
        Ok(View {
            plain: snapshot.version.is_none() && snapshot.legacy.is_none(),
            files: snapshot.files().into_iter().map(str::to_string).collect(),
            covers: snapshot.covers(),
            next: snapshot.next_version(),
            staged,
            stream: StreamCommits::read(location).await?,
        })
    }
}

/// The read-only store over one output; paths are relative to the output.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    location: Location,
    /// The version the last listing of each table's root read, by table.
    views: Arc<Mutex<HashMap<String, Arc<View>>>>,
}

impl fmt::Display for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotStore({})", self.location.url_of(""))
    }
}

/// What a read-only store (`implementer`) answers a write.
pub(super) fn refuse(operation: &str, implementer: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: operation.to_string(),
        implementer: implementer.to_string(),
    }
}

fn read_only(operation: &str) -> object_store::Error {
    refuse(operation, "leadflow's read-only snapshot of an output")
}

fn to_store_error(e: crate::error::Error) -> object_store::Error {
    match e {
        crate::error::Error::ObjectStore(e) => e,
        other => object_store::Error::Generic {
            store: "leadflow output",
            source: Box::new(other),
        },
    }
}

/// The table a path (relative to the output) is in: its first segment.
fn table_of(path: &ObjectPath) -> String {
    path.parts()
        .next()
        .map(|p| p.as_ref().to_string())
        .unwrap_or_default()
}

impl SnapshotStore {
    pub fn new(location: Location) -> Self {
        Self {
            location,
            views: Arc::default(),
        }
    }

    fn relative(&self, path: &ObjectPath) -> Option<String> {
        path.prefix_match(&self.location.prefix)
            .map(|parts| ObjectPath::from_iter(parts).to_string())
    }

    /// Every file of the newest version under `prefix` (relative), with the
    /// paths the caller asked in.
    async fn list_files(&self, prefix: ObjectPath) -> object_store::Result<Vec<ObjectMeta>> {
        // A query lists a table's root first, then (for a partitioned
        // table) each partition it reads: the version is read again at the
        // table's root, and its partitions' listings are of that version.
        let table = table_of(&prefix);
        let current = self
            .views
            .lock()
            .expect("not poisoned")
            .get(&table)
            .cloned();
        let mut view = match current {
            Some(view) if prefix.parts().count() > 1 => view,
            _ => self.read_view(&table).await?,
        };
        // A commit after the version read may delete files the listing
        // would have shown (a compaction's stream files) before it shows
        // their replacements: such a listing is done again, of the newer
        // version.
        for _ in 0..8 {
            let metas = self.list_view(&view, &prefix).await?;
            if !super::log::exists(&self.location, view.next)
                .await
                .map_err(to_store_error)?
            {
                return Ok(metas);
            }
            view = self.read_view(&table).await?;
        }
        self.list_view(&view, &prefix).await
    }

    /// The newest version, read for `table`'s listings.
    async fn read_view(&self, table: &str) -> object_store::Result<Arc<View>> {
        let view = Arc::new(View::read(&self.location).await.map_err(to_store_error)?);
        self.views
            .lock()
            .expect("not poisoned")
            .insert(table.to_string(), view.clone());
        Ok(view)
    }

    /// The files of `view` under `prefix`.
    async fn list_view(
        &self,
        view: &View,
        prefix: &ObjectPath,
    ) -> object_store::Result<Vec<ObjectMeta>> {
        let real = self.location.child(prefix.as_ref());
        let mut seen = HashSet::new();
        let mut metas = Vec::new();
        let mut listing = self.location.store.list(Some(&real));
        while let Some(mut meta) = listing.try_next().await? {
            let Some(rel) = self.relative(&meta.location) else {
                continue;
            };
            let held = view.plain
                || view.files.contains(&rel)
                || (view
                    .stream
                    .holds(meta.location.filename().unwrap_or_default())
                    && !view.covers.covers(&rel));
            if held {
                meta.location = ObjectPath::from(rel.as_str());
                seen.insert(rel);
                metas.push(meta);
            }
        }
        let under = |rel: &str| {
            prefix.as_ref().is_empty()
                || rel
                    .strip_prefix(prefix.as_ref())
                    .is_some_and(|r| r.starts_with('/'))
        };
        for rel in view.files.iter().filter(|f| under(f) && !seen.contains(*f)) {
            let Some(staged) = view.staged.get(rel) else {
                return Err(object_store::Error::NotFound {
                    path: self.location.url_of(rel),
                    source: "a file the output's newest version lists is neither in its table \
                             nor staged; was it deleted by hand?"
                        .into(),
                });
            };
            let mut meta = match self.location.store.head(staged).await {
                Ok(meta) => meta,
                // Moved into its table since the listing.
                Err(object_store::Error::NotFound { .. }) => {
                    self.location.store.head(&self.location.child(rel)).await?
                }
                Err(e) => return Err(e),
            };
            meta.location = ObjectPath::from(rel.as_str());
            metas.push(meta);
        }
        Ok(metas)
    }
}

#[async_trait]
impl ObjectStore for SnapshotStore {
    async fn put_opts(
        &self,
        _: &ObjectPath,
        _: PutPayload,
        _: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(read_only("put"))
    }

    async fn put_multipart_opts(
        &self,
        _: &ObjectPath,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only("put_multipart"))
    }

    /// Reads a file from its table or, while it is still staged, from
    /// staging (trying the table again when it moved in between).
    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let rel = location.as_ref();
        let in_table = self.location.child(rel);
        let staged = self
            .views
            .lock()
            .expect("not poisoned")
            .get(&table_of(location))
            .and_then(|v| v.staged.get(rel).cloned());
        let Some(staged) = staged else {
            return self.location.store.get_opts(&in_table, options).await;
        };
        match self
            .location
            .store
            .get_opts(&in_table, options.clone())
            .await
        {
            Err(object_store::Error::NotFound { .. }) => {}
            other => return other,
        }
        match self.location.store.get_opts(&staged, options.clone()).await {
            Err(object_store::Error::NotFound { .. }) => {
                self.location.store.get_opts(&in_table, options).await
            }
            other => other,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        locations.map(|_| Err(read_only("delete"))).boxed()
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let this = self.clone();
        let prefix = prefix.cloned().unwrap_or_default();
        futures::stream::once(async move { this.list_files(prefix).await })
            .map_ok(|metas| futures::stream::iter(metas.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        let prefix = prefix.cloned().unwrap_or_default();
        let depth = prefix.parts().count();
        let mut dirs = std::collections::BTreeSet::new();
        let mut objects = Vec::new();
        for meta in self.list_files(prefix).await? {
            let parts: Vec<_> = meta.location.parts().collect();
            if parts.len() == depth + 1 {
                objects.push(meta);
            } else if parts.len() > depth + 1 {
                dirs.insert(ObjectPath::from_iter(parts[..=depth].iter().cloned()));
            }
        }
        Ok(ListResult {
            common_prefixes: dirs.into_iter().collect(),
            objects,
        })
    }

    async fn copy_opts(
        &self,
        _: &ObjectPath,
        _: &ObjectPath,
        _: CopyOptions,
    ) -> object_store::Result<()> {
        Err(read_only("copy"))
    }
}
