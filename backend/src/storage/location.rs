//! Where the object store is: the `--storage` setting (`YOLOTS_STORAGE`) read into a
//! typed location. Nothing is opened here, so a bad setting is refused before any
//! connection is made.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};

use object_store::path::Path;

use super::StorageError;

/// The object store a process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on this machine (one machine only: other machines cannot see it).
    Local(PathBuf),
    /// An S3-compatible bucket, with an optional key prefix inside it.
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
}

impl Location {
    /// Reads the `--storage` setting: none for the local `data_dir`, `s3://BUCKET[/PREFIX]`,
    /// or `file:///FOLDER`.
    pub fn parse(setting: Option<&str>, data_dir: &FsPath) -> Result<Self, StorageError> {
        let setting = setting.map(str::trim).unwrap_or_default();
        if setting.is_empty() {
            return Ok(Location::Local(data_dir.to_owned()));
        }
        if let Some(rest) = setting.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket)?;
            let prefix = prefix.trim_matches('/');
            let prefix = if prefix.is_empty() {
                None
            } else {
                // A prefix must be a clean object path: no empty, `.` or `..` parts.
                Path::parse(prefix)
                    .ok()
                    .filter(|p| p.as_ref() == prefix)
                    .ok_or_else(|| {
                        StorageError::Config(format!(
                            "the storage prefix `{prefix}` is not a clean object path"
                        ))
                    })?;
                Some(prefix.to_owned())
            };
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix,
            });
        }
        if let Some(folder) = setting.strip_prefix("file://") {
            if !folder.starts_with('/') {
                return Err(StorageError::Config(format!(
                    "`{setting}`: a file:// storage needs an absolute folder (file:///srv/yolots)"
                )));
            }
            return Ok(Location::Local(PathBuf::from(folder)));
        }
        Err(StorageError::Config(format!(
            "unsupported storage `{setting}`: expected s3://BUCKET[/PREFIX] or file:///FOLDER"
        )))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(dir) => write!(f, "{}", dir.display()),
            Location::S3 {
                bucket,
                prefix: None,
            } => write!(f, "s3://{bucket}"),
            Location::S3 {
                bucket,
                prefix: Some(prefix),
            } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// S3 bucket names: 3 to 63 lowercase letters, digits, dots and hyphens (the rules every
/// S3-compatible store accepts), starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), StorageError> {
    let valid_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let valid_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && valid_chars && valid_ends {
        Ok(())
    } else {
        Err(StorageError::Config(format!(
            "`{bucket}` is not a valid S3 bucket name (3 to 63 of a-z, 0-9, `.` and `-`)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(setting: &str) -> Result<Location, StorageError> {
        Location::parse(Some(setting), FsPath::new("data"))
    }

    #[test]
    fn no_setting_is_the_data_folder() {
        assert_eq!(
            Location::parse(None, FsPath::new("d")).unwrap(),
            Location::Local(PathBuf::from("d"))
        );
        assert_eq!(parse("  ").unwrap(), Location::Local(PathBuf::from("data")));
    }

    #[test]
    fn s3_urls_give_bucket_and_prefix() {
        assert_eq!(
            parse("s3://models").unwrap(),
            Location::S3 {
                bucket: "models".into(),
                prefix: None
            }
        );
        let with_prefix = parse("s3://models/yolots/prod/").unwrap();
        assert_eq!(
            with_prefix,
            Location::S3 {
                bucket: "models".into(),
                prefix: Some("yolots/prod".into())
            }
        );
        assert_eq!(with_prefix.to_string(), "s3://models/yolots/prod");
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://-bucket",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "gs://bucket",
            "file://relative",
            "/some/folder",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(matches!(error, StorageError::Config(_)), "{bad}: {error}");
        }
        assert_eq!(
            parse("file:///srv/yolots").unwrap(),
            Location::Local(PathBuf::from("/srv/yolots"))
        );
    }
}
