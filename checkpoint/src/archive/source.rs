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

impl Source<'_> {
    /// Inflates the deflate stream of `compressed` bytes at `start` (see [`inflate`]):
    /// from a slice in place, from a reader as it is read, so the compressed bytes are never
    /// held beside the inflated ones.
    pub(crate) fn inflate(
        &self,
        start: u64,
        compressed: u64,
        declared: u64,
        crc: u32,
        entry: &str,
        what: &str,
    ) -> Result<Vec<u8>> {
        match self {
            Source::Reader { reader, len } => {
                let truncated = || Error::Truncated {
                    what: what.to_string(),
                    offset: *len,
                };
                let end = start.checked_add(compressed).ok_or_else(truncated)?;
                if end > *len {
                    return Err(truncated());
                }
                let mut reader = reader.lock().unwrap_or_else(|e| e.into_inner());
                reader
                    .seek(SeekFrom::Start(start))
                    .map_err(|e| Error::io(what, e))?;
                inflate(
                    (&mut *reader).take(compressed),
                    compressed,
                    declared,
                    crc,
                    entry,
                )
            }
            Source::Bytes(_) | Source::None => {
                let raw = self.read(start, compressed, what)?;
                inflate(raw.as_ref(), compressed, declared, crc, entry)
            }
        }
    }
}

/// Inflates a raw deflate stream of `compressed` bytes that must produce exactly `declared`
/// bytes with CRC-32 `crc`, never producing more than `declared` bytes however the stream
/// is built. The caller has paid for `declared` bytes.
pub(crate) fn inflate(
    input: impl Read,
    compressed: u64,
    declared: u64,
    crc: u32,
    entry: &str,
) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::corrupt(entry, reason);
    // Deflate expands at most about 1032:1: a stream too short for the declared size gets
    // no more room than it can fill, a plausible one exactly the declared size (paid for),
    // so the buffer never grows past it.
    let capacity = declared.min(compressed.saturating_mul(1032).saturating_add(64));
    let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let decoder = flate2::read::DeflateDecoder::new(input);
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
