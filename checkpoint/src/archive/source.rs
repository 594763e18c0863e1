//! Where the bytes of a checkpoint come from: a borrowed slice (zero-copy) or a reader that
//! is seeked and read on demand.

use std::borrow::Cow;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// `Read + Seek` as one object-safe trait.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// The input of a checkpoint.
pub(crate) enum Source<'a> {
    Bytes(&'a [u8]),
    /// A reader behind a lock, so tensors can be read through `&Checkpoint`.
    Reader {
        reader: Mutex<Box<dyn ReadSeek + Send + 'a>>,
        len: u64,
    },
    /// Only caller-supplied slices (`Checkpoint::from_parts`).
    None,
}

impl<'a> Source<'a> {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Source::Bytes(bytes) => bytes.len() as u64,
            Source::Reader { len, .. } => *len,
            Source::None => 0,
        }
    }

    /// `len` bytes at `start`: borrowed from a slice, read from a reader.
    pub(crate) fn read(&self, start: u64, len: u64, what: &str) -> Result<Cow<'a, [u8]>> {
        let truncated = || Error::Truncated {
            what: what.to_string(),
            offset: self.len(),
        };
        let end = start.checked_add(len).ok_or_else(truncated)?;
        if end > self.len() {
            return Err(truncated());
        }
        match self {
            Source::Bytes(bytes) => {
                let start = usize::try_from(start).map_err(|_| truncated())?;
                let end = usize::try_from(end).map_err(|_| truncated())?;
                bytes
                    .get(start..end)
                    .map(Cow::Borrowed)
                    .ok_or_else(truncated)
            }
            Source::Reader { reader, .. } => {
                let len = usize::try_from(len).map_err(|_| truncated())?;
                let mut buf = vec![0u8; len];
                // A poisoned lock only means another reader panicked mid-read; every read
                // seeks first, so the reader is still usable.
                let mut reader = reader.lock().unwrap_or_else(|e| e.into_inner());
                reader
                    .seek(SeekFrom::Start(start))
                    .and_then(|_| reader.read_exact(&mut buf))
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => truncated(),
                        _ => Error::io(what, e),
                    })?;
                Ok(Cow::Owned(buf))
            }
            Source::None => Err(truncated()),
        }
    }
}

/// Inflates a raw deflate stream that must produce exactly `declared` bytes with CRC-32
/// `crc`, never producing more than `declared` bytes however the stream is built.
pub(crate) fn inflate(compressed: &[u8], declared: u64, crc: u32, entry: &str) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::corrupt(entry, reason);
    // Deflate expands at most about 1032:1; do not trust the declared size for the capacity.
    let capacity = declared.min(
        (compressed.len() as u64)
            .saturating_mul(1032)
            .saturating_add(64),
    );
    let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let decoder = flate2::read::DeflateDecoder::new(compressed);
    decoder
        .take(declared.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("deflate stream: {e}")))?;
    if out.len() as u64 != declared {
        return Err(corrupt(format!(
            "inflates to {}{} bytes, {declared} declared",
            out.len(),
            if out.len() as u64 > declared { "+" } else { "" }
        )));
    }
    let actual = crc32fast::hash(&out);
    if actual != crc {
        return Err(corrupt(format!(
            "CRC-32 {actual:08x} does not match the declared {crc:08x}"
        )));
    }
    Ok(out)
}
