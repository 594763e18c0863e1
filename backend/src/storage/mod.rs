//! Where uploads and artifacts live: an `object_store` behind a few purpose-made calls.
//!
//! Keys are made here from ids the server generated, never from user input:
//! `jobs/<job>/source.pt` for an upload, `jobs/<job>/artifacts/<lease>/<name>` for an
//! artifact (one folder per attempt, so two workers that both believed they held a job can
//! never overwrite each other's file). The local folder is the default store; an
//! S3-compatible bucket ([`s3`]) lets processes on several machines share one store, and
//! any other store `object_store` supports fits behind [`Storage::new`].
//!
//! - [`location`]: the `--storage` setting, parsed.
//! - [`s3`]: an S3-compatible bucket from the standard `AWS_*` variables.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

pub mod location;
pub mod s3;

pub use location::Location;

/// Bytes buffered before an upload turns into a multipart upload, and the size of each
/// part (S3 needs at least 5 MiB per part but the last).
const PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once: bounds an upload's memory to a few parts
/// however slow the store is.
const PARTS_IN_FLIGHT: usize = 3;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("invalid storage setting: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            what: what.into(),
            source,
        }
    }

    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StorageError::Store(object_store::Error::NotFound { .. })
        )
    }
}

/// The object store of the service.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The folder of a local store (lets a worker hand the file to its child directly).
    local: Option<Arc<LocalFileSystem>>,
}

impl Storage {
    /// A store over any `object_store` backend.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, local: None }
    }

    /// The store a location names.
    pub fn open(location: &Location) -> Result<Self, StorageError> {
        match location {
            Location::Local(dir) => Self::local(dir),
            Location::S3 { bucket, prefix } => Ok(Self::new(s3::open(bucket, prefix.as_deref())?)),
        }
    }

    /// The local folder store (created if missing).
    pub fn local(dir: &FsPath) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        let fs = Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true));
        Ok(Self {
            store: fs.clone(),
            local: Some(fs),
        })
    }

    /// Where an upload goes.
    pub fn source_key(job: Uuid) -> Path {
        Path::from(format!("jobs/{job}/source.pt"))
    }

    /// Where an attempt's artifact goes. `name` is made by the server (see
    /// [`crate::model::artifact_name`]).
    pub fn artifact_key(job: Uuid, lease: Uuid, name: &str) -> Path {
        Path::from(format!("jobs/{job}/artifacts/{lease}/{name}"))
    }

    /// A streaming writer for a new object; nothing is visible until
    /// [`ObjectWriter::finish`], and [`ObjectWriter::abort`] leaves nothing behind.
    pub fn writer(&self, key: &Path) -> ObjectWriter {
        ObjectWriter {
            inner: Some(
                BufWriter::with_capacity(self.store.clone(), key.clone(), PART_BYTES)
                    .with_max_concurrency(PARTS_IN_FLIGHT),
            ),
        }
    }

    /// Copies a local file into the store.
    pub async fn put_file(&self, key: &Path, file: &FsPath) -> Result<u64, StorageError> {
        let mut input = tokio::fs::File::open(file)
            .await
            .map_err(|e| StorageError::io(format!("opening {}", file.display()), e))?;
        let mut writer = self.writer(key);
        let mut total = 0u64;
        loop {
            let mut buf = vec![0u8; 4 << 20];
            let n = input
                .read(&mut buf)
                .await
                .map_err(|e| StorageError::io(format!("reading {}", file.display()), e))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            total += n as u64;
            if let Err(error) = writer.put(Bytes::from(buf)).await {
                writer.abort().await;
                return Err(error);
            }
        }
        writer.finish().await?;
        Ok(total)
    }

    /// The file behind a key when the store is a local folder.
    pub fn local_path(&self, key: &Path) -> Option<PathBuf> {
        self.local
            .as_ref()
            .and_then(|fs| fs.path_to_filesystem(key).ok())
    }

    /// Copies an object into a local file.
    pub async fn download(&self, key: &Path, file: &FsPath) -> Result<(), StorageError> {
        let mut output = tokio::fs::File::create(file)
            .await
            .map_err(|e| StorageError::io(format!("creating {}", file.display()), e))?;
        let mut stream = self.store.get(key).await?.into_stream();
        while let Some(chunk) = stream.next().await {
            output
                .write_all(&chunk?)
                .await
                .map_err(|e| StorageError::io(format!("writing {}", file.display()), e))?;
        }
        output
            .flush()
            .await
            .map_err(|e| StorageError::io(format!("writing {}", file.display()), e))
    }

    /// The bytes of an object (or of a range of it) as a stream.
    pub async fn stream(
        &self,
        key: &Path,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, object_store::Error>>, StorageError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        Ok(self.store.get_opts(key, options).await?.into_stream())
    }

    /// Size of an object.
    pub async fn size(&self, key: &Path) -> Result<u64, StorageError> {
        Ok(self.store.head(key).await?.size)
    }

    /// Deletes every artifact object of `job` but `keep`; returns how many went. An attempt
    /// cut short between its upload and its record (a worker killed there) leaves an object
    /// that no row names; the attempt that holds the job's lease removes it.
    pub async fn delete_other_artifacts(
        &self,
        job: Uuid,
        keep: &Path,
    ) -> Result<usize, StorageError> {
        let prefix = Path::from(format!("jobs/{job}/artifacts"));
        let mut listed = self.store.list(Some(&prefix));
        let mut stale = Vec::new();
        while let Some(meta) = listed.next().await {
            let location = meta?.location;
            if &location != keep {
                stale.push(location);
            }
        }
        for key in &stale {
            self.delete(key).await?;
        }
        Ok(stale.len())
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, key: &Path) -> Result<(), StorageError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// A blocking reader over an object, for the checkpoint reader (call it from a blocking
    /// thread: it waits on the async store for every block it fetches).
    pub fn blocking_reader(
        &self,
        key: &Path,
        size: u64,
        runtime: tokio::runtime::Handle,
    ) -> Result<Box<dyn ReadSeekSend>, StorageError> {
        if let Some(path) = self.local_path(key) {
            let file = std::fs::File::open(&path)
                .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
            return Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, file)));
        }
        Ok(Box::new(RangeReader {
            store: self.store.clone(),
            key: key.clone(),
            size,
            position: 0,
            blocks: Vec::with_capacity(BLOCKS_KEPT),
            runtime,
        }))
    }
}

/// What the checkpoint reader needs from a source.
pub trait ReadSeekSend: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeekSend for T {}

/// A streaming upload into the store.
pub struct ObjectWriter {
    inner: Option<BufWriter>,
}

impl ObjectWriter {
    /// Appends bytes.
    pub async fn put(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        match self.inner.as_mut() {
            Some(writer) => Ok(writer.put(bytes).await?),
            None => Err(StorageError::io(
                "writing an object",
                std::io::Error::other("the writer is closed"),
            )),
        }
    }

    /// Completes the object.
    pub async fn finish(mut self) -> Result<(), StorageError> {
        if let Some(mut writer) = self.inner.take() {
            writer
                .shutdown()
                .await
                .map_err(|e| StorageError::io("completing an object", e))?;
        }
        Ok(())
    }

    /// Drops what was written so far.
    pub async fn abort(&mut self) {
        if let Some(mut writer) = self.inner.take()
            && let Err(error) = writer.abort().await
        {
            tracing::warn!(%error, "aborting an upload failed");
        }
    }
}

/// Size of one ranged get of [`RangeReader`].
const BLOCK_BYTES: u64 = 4 << 20;
/// Blocks it keeps: the reader jumps between a zip's central directory, its pickle and
/// its tensors; a few cached blocks turn hundreds of small reads into a few requests.
const BLOCKS_KEPT: usize = 4;

/// `Read + Seek` over ranged gets of an object, in aligned blocks.
struct RangeReader {
    store: Arc<dyn ObjectStore>,
    key: Path,
    size: u64,
    position: u64,
    /// Recently read blocks (start offset, bytes), oldest first.
    blocks: Vec<(u64, Bytes)>,
    runtime: tokio::runtime::Handle,
}

impl RangeReader {
    /// The block starting at `start`, fetched when not cached.
    fn block(&mut self, start: u64) -> std::io::Result<Bytes> {
        if let Some((_, bytes)) = self.blocks.iter().find(|(s, _)| *s == start) {
            return Ok(bytes.clone());
        }
        let end = (start + BLOCK_BYTES).min(self.size);
        let bytes = self
            .runtime
            .block_on(self.store.get_range(&self.key, start..end))
            .map_err(std::io::Error::other)?;
        if self.blocks.len() == BLOCKS_KEPT {
            self.blocks.remove(0);
        }
        self.blocks.push((start, bytes.clone()));
        Ok(bytes)
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.position >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let start = self.position / BLOCK_BYTES * BLOCK_BYTES;
        let block = self.block(start)?;
        let offset = usize::try_from(self.position - start).unwrap_or(usize::MAX);
        let available = block.get(offset..).unwrap_or_default();
        if available.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the object is shorter than its size",
            ));
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        self.position = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn aborted_uploads_leave_nothing_and_finished_ones_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let key = Storage::source_key(Uuid::new_v4());

        let mut writer = storage.writer(&key);
        for _ in 0..3 {
            writer.put(Bytes::from(vec![7u8; 5 << 20])).await.unwrap();
        }
        writer.abort().await;
        let files: Vec<_> = walk(dir.path());
        assert!(files.is_empty(), "left behind: {files:?}");

        let mut writer = storage.writer(&key);
        writer.put(Bytes::from_static(b"hello ")).await.unwrap();
        writer.put(Bytes::from_static(b"world")).await.unwrap();
        writer.finish().await.unwrap();
        assert_eq!(storage.size(&key).await.unwrap(), 11);
        let handle = tokio::runtime::Handle::current();
        let storage2 = storage.clone();
        let key2 = key.clone();
        let text = tokio::task::spawn_blocking(move || {
            let mut reader = storage2.blocking_reader(&key2, 11, handle).unwrap();
            reader.seek(SeekFrom::Start(6)).unwrap();
            let mut s = String::new();
            reader.read_to_string(&mut s).unwrap();
            s
        })
        .await
        .unwrap();
        assert_eq!(text, "world");
        storage.delete(&key).await.unwrap();
        storage.delete(&key).await.unwrap();
    }

    #[tokio::test]
    async fn range_reader_reads_any_store() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let storage = Storage::new(store);
        let key = Path::from("a/b");
        let mut writer = storage.writer(&key);
        writer
            .put(Bytes::from((0u8..=255).collect::<Vec<_>>()))
            .await
            .unwrap();
        writer.finish().await.unwrap();
        let handle = tokio::runtime::Handle::current();
        let bytes = tokio::task::spawn_blocking(move || {
            let mut reader = storage.blocking_reader(&key, 256, handle).unwrap();
            reader.seek(SeekFrom::End(-6)).unwrap();
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert_eq!(bytes, vec![250, 251, 252, 253, 254, 255]);
    }

    #[tokio::test]
    async fn range_reader_serves_scattered_reads_across_blocks() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let storage = Storage::new(store);
        let key = Path::from("big");
        let data: Vec<u8> = (0..(BLOCK_BYTES as usize * 2 + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut writer = storage.writer(&key);
        writer.put(Bytes::from(data.clone())).await.unwrap();
        writer.finish().await.unwrap();
        let size = data.len() as u64;
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut reader = storage.blocking_reader(&key, size, handle).unwrap();
            // Reads that straddle block ends, jumps back and forth, and the tail.
            for start in [BLOCK_BYTES - 10, 5, 2 * BLOCK_BYTES - 1, 17, size - 100] {
                reader.seek(SeekFrom::Start(start)).unwrap();
                let mut out = vec![0u8; 100];
                reader.read_exact(&mut out).unwrap();
                let start = start as usize;
                assert_eq!(out, data[start..start + 100], "at {start}");
            }
            let mut rest = Vec::new();
            assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0);
        })
        .await
        .unwrap();
    }

    fn walk(dir: &FsPath) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
