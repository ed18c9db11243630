//! Where data lives: local paths and `s3://bucket/prefix` URLs, as object stores.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::{GetOptions, GetRange, ObjectStoreExt};

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientConfigKey, RetryConfig};

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

/// How long S3 may take before leadflow says so. Each is overridden by an
/// environment variable of the same meaning, in seconds.
const S3_CONNECT_TIMEOUT: (&str, u64) = ("LEADFLOW_S3_CONNECT_TIMEOUT_SECS", 5);
const S3_REQUEST_TIMEOUT: (&str, u64) = ("LEADFLOW_S3_REQUEST_TIMEOUT_SECS", 30);
const S3_RETRY_TIMEOUT: (&str, u64) = ("LEADFLOW_S3_RETRY_SECS", 60);

fn locate(spec: &str, create: bool) -> Result<Location> {
    if is_s3(spec) {
        let url = url::Url::parse(spec).map_err(|e| Error::Usage(format!("`{spec}`: {e}")))?;
        let bucket = url
            .host_str()
            .ok_or_else(|| Error::Usage(format!("`{spec}`: no bucket in the URL")))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = s3_endpoint()? {
            builder = builder
                .with_endpoint(endpoint.as_str().trim_end_matches('/'))
                .with_allow_http(endpoint.scheme() == "http");
        }
        if std::env::var("AWS_DEFAULT_REGION").is_err() && std::env::var("AWS_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let secs = |(var, default): (&str, u64)| -> Result<Duration> {
            match std::env::var(var) {
                Err(_) => Ok(Duration::from_secs(default)),
                Ok(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (1..=3600).contains(&n) => Ok(Duration::from_secs(n)),
                    _ => Err(Error::Usage(format!(
                        "{var} = `{v}`: expected a number of seconds from 1 to 3600"
                    ))),
                },
            }
        };
        let connect = secs(S3_CONNECT_TIMEOUT)?;
        let request = secs(S3_REQUEST_TIMEOUT)?;
        builder = builder
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                format!("{}s", connect.as_secs()),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}s", request.as_secs()),
            )
            .with_retry(RetryConfig {
                backoff: Default::default(),
                max_retries: 5,
                retry_timeout: secs(S3_RETRY_TIMEOUT)?,
            });
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

/// The S3 endpoint the environment names (`AWS_ENDPOINT_URL`, else
/// `AWS_ENDPOINT`), checked here: object_store would panic on one it cannot
/// use.
fn s3_endpoint() -> Result<Option<url::Url>> {
    endpoint_from(|var| std::env::var(var).ok())
}

fn endpoint_from(env: impl Fn(&str) -> Option<String>) -> Result<Option<url::Url>> {
    let Some((var, value)) = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .into_iter()
        .find_map(|var| Some((var, env(var)?)))
    else {
        return Ok(None);
    };
    let bad = |why: &str| {
        Err(Error::Usage(format!(
            "{var} = `{value}`: {why}; write it like http://localhost:9000 or https://s3.example.com"
        )))
    };
    if value.trim() != value {
        return bad("it has spaces around it");
    }
    match url::Url::parse(&value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(Some(url))
        }
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            bad("it needs http:// or https:// in front")
        }
        Ok(_) => bad("it names no host"),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            bad("it needs http:// or https:// in front")
        }
        Err(e) => bad(&format!("not a URL ({e})")),
    }
}

/// Environment variables any of which gives object_store S3 credentials
/// without asking an instance metadata endpoint.
const CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_SKIP_SIGNATURE",
];

/// An object store error in words a user can act on: without credentials in
/// the environment, say so and where they are looked for, rather than only
/// which metadata endpoint was tried last.
pub fn explain(e: &object_store::Error) -> String {
    let text = e.to_string();
    let from_env = CREDENTIAL_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let s3_failed = matches!(e, object_store::Error::Generic { store: "S3", .. });
    if !s3_failed || from_env {
        return text;
    }
    format!(
        "no S3 credentials in the environment: set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or \
         AWS_WEB_IDENTITY_TOKEN_FILE; without them leadflow asks the instance \
         metadata endpoint (EC2/ECS roles), which failed: {text}"
    )
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

    /// The location `rel` below this one, in the same store.
    pub fn under(&self, rel: &str) -> Location {
        Location {
            store: self.store.clone(),
            prefix: self.child(rel),
            base_url: self.base_url.clone(),
            local_root: self.local_root.as_ref().map(|root| root.join(rel)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_s3_endpoint_is_named_not_a_panic() {
        let check = |value: &str| {
            endpoint_from(|var| (var == "AWS_ENDPOINT_URL").then(|| value.to_string()))
                .map(|u| u.map(|u| u.to_string()))
                .map_err(|e| e.to_string())
        };
        for (value, says) in [
            ("localhost:9000", "http:// or https://"),
            ("127.0.0.1:9000", "http:// or https://"),
            ("http://localhost:9000 ", "spaces"),
            ("not a url", "http:// or https://"),
            ("ftp://files.example", "http:// or https://"),
        ] {
            let err = check(value).unwrap_err();
            assert!(
                err.contains("AWS_ENDPOINT_URL") && err.contains(says),
                "{value}: {err}"
            );
        }
        assert_eq!(
            check("http://localhost:9000").unwrap().as_deref(),
            Some("http://localhost:9000/")
        );
        assert_eq!(endpoint_from(|_| None).unwrap(), None);
    }
}
