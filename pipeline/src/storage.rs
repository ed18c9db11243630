//! Where data lives: local paths and `s3://bucket/prefix` URLs, as object stores.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::{GetOptions, GetRange, ObjectStoreExt};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;

use crate::error::{Error, Result};

/// A place to read from or write to: a store and a prefix inside it.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside `store`.
    pub prefix: ObjectPath,
    /// `s3://bucket` or `file://` : the URL DataFusion registers `store` under.
    pub base_url: url::Url,
    /// The local directory, when this is on local disk.
    pub local_root: Option<std::path::PathBuf>,
}

/// True for `s3://…` (and `s3a://…`).
pub fn is_s3(spec: &str) -> bool {
    spec.starts_with("s3://") || spec.starts_with("s3a://")
}

/// Opens `spec`: `s3://bucket/prefix` (credentials, region and endpoint from
/// the usual AWS environment variables; `AWS_ENDPOINT_URL` and `AWS_ENDPOINT`
/// point it at MinIO or another S3-compatible server) or a local path.
pub fn open(spec: &str) -> Result<Location> {
    locate(spec, false)
}

/// Like [`open`], creating a local directory that does not exist yet.
pub fn create(spec: &str) -> Result<Location> {
    locate(spec, true)
}

fn locate(spec: &str, create: bool) -> Result<Location> {
    if is_s3(spec) {
        let url = url::Url::parse(spec).map_err(|e| Error::Usage(format!("`{spec}`: {e}")))?;
        let bucket = url
            .host_str()
            .ok_or_else(|| Error::Usage(format!("`{spec}`: no bucket in the URL")))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            builder = builder.with_endpoint(&endpoint);
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .unwrap_or_default();
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        if std::env::var("AWS_DEFAULT_REGION").is_err() && std::env::var("AWS_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let store = builder.build()?;
        let prefix = ObjectPath::from(url.path().trim_start_matches('/'));
        let base_url = url::Url::parse(&format!("s3://{bucket}")).expect("valid URL");
        return Ok(Location {
            store: Arc::new(store),
            prefix,
            base_url,
            local_root: None,
        });
    }
    let path = std::path::Path::new(spec);
    if create {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
    }
    let root = path.canonicalize().map_err(|e| Error::io(path, e))?;
    let store = LocalFileSystem::new_with_prefix(&root)?;
    Ok(Location {
        store: Arc::new(store),
        prefix: ObjectPath::default(),
        base_url: url::Url::from_directory_path(&root)
            .map_err(|_| Error::Usage(format!("`{spec}` is not an absolute path")))?,
        local_root: Some(root),
    })
}

impl Location {
    /// `prefix/rel`.
    pub fn child(&self, rel: &str) -> ObjectPath {
        let mut parts: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(rel.split('/').filter(|p| !p.is_empty()).map(str::to_string));
        ObjectPath::from_iter(parts)
    }

    /// A URL DataFusion can list: the store's base URL plus `rel` under the prefix.
    pub fn url_of(&self, rel: &str) -> String {
        match &self.local_root {
            Some(root) => format!("{}/", root.join(rel).display()),
            None => format!(
                "{}/{}/",
                self.base_url.as_str().trim_end_matches('/'),
                self.child(rel)
            ),
        }
    }
}

/// Reads a Parquet object with ranged GETs (the pattern of parquet's
/// `examples/object_store.rs`): the footer first, then the column chunks.
#[derive(Debug, Clone)]
pub struct ObjectStoreReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
}

impl ObjectStoreReader {
    pub fn new(store: Arc<dyn ObjectStore>, path: ObjectPath) -> Self {
        Self { store, path }
    }
}

fn parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectStoreReader {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(parquet_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut ObjectStoreReader {
    fn fetch_suffix(
        &mut self,
        suffix: usize,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let response = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(parquet_err)?;
            response.bytes().await.map_err(parquet_err)
        }
        .boxed()
    }
}
