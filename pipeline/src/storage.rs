//! Where data lives: local paths and `s3://bucket/prefix` URLs, as object stores.

use std::sync::Arc;

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
    /// How the user wrote it, for messages.
    pub display: String,
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
            display: spec.to_string(),
            base_url,
            local_root: None,
        });
    }
    let path = std::path::Path::new(spec);
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
    let root = path.canonicalize().map_err(|e| Error::io(path, e))?;
    let store = LocalFileSystem::new_with_prefix(&root)?;
    Ok(Location {
        store: Arc::new(store),
        prefix: ObjectPath::default(),
        display: spec.to_string(),
        base_url: url::Url::from_directory_path(&root)
            .map_err(|_| Error::Usage(format!("`{spec}` is not an absolute path")))?,
        local_root: Some(root),
    })
}

impl Location {
    /// `prefix/rel`.
    pub fn child(&self, rel: &str) -> ObjectPath {
        let mut parts: Vec<String> = self.prefix.parts().map(|p| p.as_ref().to_string()).collect();
        parts.extend(rel.split('/').filter(|p| !p.is_empty()).map(str::to_string));
        ObjectPath::from_iter(parts)
    }

    /// A URL DataFusion can list: the store's base URL plus `rel` under the prefix.
    pub fn url_of(&self, rel: &str) -> String {
        match &self.local_root {
            Some(root) => format!("{}/", root.join(rel).display()),
            None => format!("{}/{}/", self.base_url.as_str().trim_end_matches('/'), self.child(rel)),
        }
    }
}
