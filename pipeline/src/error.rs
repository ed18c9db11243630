//! The pipeline's errors: each says whose fault it is and whether a retry can help.

use std::path::PathBuf;

/// An error that stops a command. Bad rows never get here: they become rejects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user asked for something we cannot do (bad flag, bad path, bad SQL).
    #[error("{0}")]
    Usage(String),

    /// No input file matched what was asked for.
    #[error("no input files match `{0}`")]
    NoInput(String),

    /// A file's header or schema cannot be read as leads.
    #[error("{source_name}: {reason}")]
    BadInput { source_name: String, reason: String },

    /// Reading or writing local files failed (permissions, disk full).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The object store (S3 or compatible) failed; often worth a retry.
    #[error("object store: {}", crate::storage::explain(.0))]
    ObjectStore(#[from] object_store::Error),

    /// The query engine failed: bad SQL, or a failure inside the plan.
    #[error("query: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),

    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),

    /// Something that cannot happen did (a task panicked, a broken
    /// invariant): a bug in leadflow.
    #[error("internal error: {0}")]
    Internal(String),

    /// The provider waterfall could not start (bad config, missing key).
    #[error("{0}")]
    Waterfall(#[from] leadflow_waterfall::Error),

    /// Another writer committed into the output what this one would have
    /// replaced: running the command again replaces it.
    #[error("{0}")]
    Conflict(String),

    /// A service leadflow needs did not answer (Redis for `leadflow status`).
    #[error("{0}")]
    Unavailable(String),
}

/// Whose fault an error is, which says what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The command, its config, its SQL or its input is wrong: fix it and
    /// run again; the same command will fail the same way.
    User,
    /// A service or the machine failed (object store, disk, network): the
    /// same command may succeed later.
    Service,
    /// leadflow itself failed: a bug worth reporting.
    Internal,
}

impl Fault {
    /// The process exit code for an error of this kind (0 is success).
    pub fn exit_code(self) -> i32 {
        match self {
            Fault::Internal => 1,
            Fault::User => 2,
            Fault::Service => 3,
        }
    }
}

impl Error {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        // A full disk or a read-only one is the machine's wherever the
        // write failed: our writer, the object store's, DataFusion's.
        if out_of_space(self).is_some() {
            return Fault::Service;
        }
        match self {
            Error::Usage(_) | Error::NoInput(_) | Error::BadInput { .. } => Fault::User,
            // A path that does not exist was mistyped; other I/O failures
            // (disk full, permissions, a failing disk) are the machine's.
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Fault::User
            }
            Error::Io { .. }
            | Error::ObjectStore(_)
            | Error::Unavailable(_)
            | Error::Conflict(_) => Fault::Service,
            Error::DataFusion(e) => query_fault(e),
            Error::Arrow(_) | Error::Parquet(_) | Error::Internal(_) => Fault::Internal,
            Error::Waterfall(e) if e.is_users() => Fault::User,
            Error::Waterfall(_) => Fault::Service,
        }
    }

    /// Whether running the same command again may succeed without any change.
    pub fn retryable(&self) -> bool {
        self.fault() == Fault::Service
    }

    /// The error as one about the input file `name`: a file that cannot be
    /// decoded is named, so the user knows which one to fix.
    pub(crate) fn in_file(self, name: &str) -> Self {
        match self {
            Error::Parquet(e) => Error::BadInput {
                source_name: name.to_string(),
                reason: format!("not a readable Parquet file: {e}"),
            },
            Error::Arrow(e) => Error::BadInput {
                source_name: name.to_string(),
                reason: e.to_string(),
            },
            other => other,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The write that found no room (ENOSPC, EDQUOT) or a read-only file
/// system (EROFS), anywhere in `error`'s chain of causes: object_store wraps
/// the `io::Error` of a local write in its own error, and DataFusion,
/// parquet and our writers wrap that again.
pub fn out_of_space<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a std::io::Error> {
    use std::io::ErrorKind;
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::ReadOnlyFilesystem
            )
        {
            return Some(io);
        }
        cause = e.source();
    }
    None
}

/// Whose fault a query error is: bad SQL, an unknown column or a wrong
/// argument type is the user's, a failing store the service's, the rest ours.
fn query_fault(e: &datafusion::error::DataFusionError) -> Fault {
    use datafusion::error::DataFusionError as E;
    match e.find_root() {
        E::SQL(..)
        | E::Plan(_)
        | E::SchemaError(..)
        | E::NotImplemented(_)
        | E::Configuration(_)
        | E::ResourcesExhausted(_) => Fault::User,
        E::ObjectStore(_) | E::IoError(_) => Fault::Service,
        E::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => ours.fault(),
            None => Fault::Internal,
        },
        _ => Fault::Internal,
    }
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => e,
            other => datafusion::error::DataFusionError::External(Box::new(other)),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    /// object_store's local store reports a failed write as its own error
    /// (`UnableToCopyDataToFile { source: io::Error }`) inside
    /// `object_store::Error::Generic`; parquet and DataFusion wrap that again.
    #[derive(Debug, thiserror::Error)]
    #[error("Unable to copy data to file: {source}")]
    struct LocalWrite {
        source: std::io::Error,
    }

    fn store_error(kind: ErrorKind) -> object_store::Error {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(LocalWrite {
                source: std::io::Error::from(kind),
            }),
        }
    }

    #[test]
    fn a_full_or_read_only_disk_is_the_machines_fault_however_wrapped() {
        use datafusion::error::DataFusionError;
        use datafusion::parquet::errors::ParquetError;
        for kind in [
            ErrorKind::StorageFull,
            ErrorKind::QuotaExceeded,
            ErrorKind::ReadOnlyFilesystem,
        ] {
            let wrapped = [
                Error::ObjectStore(store_error(kind)),
                Error::Parquet(ParquetError::External(Box::new(store_error(kind)))),
                Error::DataFusion(DataFusionError::External(Box::new(Error::Parquet(
                    ParquetError::External(Box::new(store_error(kind))),
                )))),
                Error::DataFusion(DataFusionError::ParquetError(Box::new(
                    ParquetError::External(Box::new(store_error(kind))),
                ))),
                Error::io("out/x.parquet", std::io::Error::from(kind)),
            ];
            for e in wrapped {
                assert_eq!(e.fault(), Fault::Service, "{kind:?}: {e:?}");
                assert_eq!(out_of_space(&e).map(|io| io.kind()), Some(kind), "{e:?}");
            }
        }
        // Other failures keep their fault.
        let bug = Error::Parquet(ParquetError::General("bad page".into()));
        assert_eq!(bug.fault(), Fault::Internal);
        assert!(out_of_space(&bug).is_none());
    }
}
