//! The PyTorch zip format: `<name>/data.pkl`, `<name>/data/<key>` storages, `<name>/byteorder`.
//!
//! The `zip` crate reads the central directory and locates each entry's data; the bytes are
//! then taken straight from the input (stored entries, as `torch.save` writes them) or
//! inflated on demand under the limits. Declared sizes are checked before anything is
//! inflated, so a zip bomb is refused without work, and the entry count the end records
//! declare is checked before the central directory is parsed.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::Entry;
use crate::error::{Error, Result, clip};
use crate::limits::Limits;

/// The entries of a torch zip archive that the reader uses.
pub(crate) struct ZipLayout {
    pub pickle: Entry<'static>,
    pub pickle_name: String,
    pub byteorder: Option<Entry<'static>>,
    pub storages: HashMap<Box<str>, Entry<'static>>,
}

/// Reads the central directory of `reader` (`file_len` bytes) and gives the reader back.
pub(crate) fn layout<R: Read + Seek>(
    mut reader: R,
    file_len: u64,
    limits: &Limits,
) -> Result<(ZipLayout, R)> {
    let declared = declared_entries(&mut reader, file_len)?;
    if declared > limits.max_entries {
        return Err(Error::limit("zip entries", limits.max_entries, declared));
    }
    let mut archive = ZipArchive::new(reader).map_err(|e| zip_error(e, "zip archive", file_len))?;
    let count = archive.len() as u64;
    if count > limits.max_entries {
        return Err(Error::limit("zip entries", limits.max_entries, count));
    }
    // The zip crate keeps the last of entries with the same name, as PyTorch does; but
    // torch never writes two, so the file was edited and which copy was meant is unknown.
    if archive.has_duplicate_names() {
        return Err(Error::corrupt(
            "zip archive",
            "two entries with the same name",
        ));
    }

    let mut pickle: Option<(String, Entry<'static>)> = None;
    // Entries of every top folder; only the pickle's own folder counts in the end.
    let mut byteorders: Vec<(String, Entry<'static>)> = Vec::new();
    let mut storages: Vec<(String, Box<str>, Entry<'static>)> = Vec::new();
    let mut torchscript = false;
    let mut total_inflated: u64 = 0;

    for index in 0..archive.len() {
        let file = archive
            .by_index_raw(index)
            .map_err(|e| zip_error(e, "zip entry header", file_len))?;
        let name = String::from_utf8_lossy(file.name_raw()).into_owned();
        let quoted = clip(&name);
        let (prefix, role) = role(&name);
        if matches!(role, Role::TorchScript) {
            torchscript = true;
        }
        if matches!(role, Role::Other | Role::TorchScript) {
            continue;
        }
        let size = file.size();
        let compressed = file.compressed_size();
        let start = file
            .data_start()
            .ok_or_else(|| Error::corrupt(&quoted, "no local header"))?;
        let end = start
            .checked_add(compressed)
            .ok_or_else(|| Error::corrupt(&quoted, "size overflows"))?;
        if end > file_len {
            return Err(Error::Truncated {
                what: format!("zip entry `{quoted}`"),
                offset: file_len,
            });
        }
        let entry = match file.compression() {
            CompressionMethod::Stored => {
                if size != compressed {
                    return Err(Error::corrupt(
                        &quoted,
                        format!("stored entry of {compressed} bytes declares {size}"),
                    ));
                }
                Entry::Stored { start, len: size }
            }
            CompressionMethod::Deflated => {
                // Refuse before inflating anything: every declared size is known now.
                if size > limits.max_entry_size {
                    return Err(Error::limit("zip entry size", limits.max_entry_size, size));
                }
                total_inflated = total_inflated.saturating_add(size);
                if total_inflated > limits.max_total_inflated {
                    return Err(Error::limit(
                        "total inflated size",
                        limits.max_total_inflated,
                        total_inflated,
                    ));
                }
                Entry::Deflated {
                    start,
                    compressed,
                    len: size,
                    crc32: file.crc32(),
                    name: name.clone(),
                }
            }
            other => {
                return Err(Error::Unsupported {
                    what: format!("compression method {other} of zip entry `{quoted}`"),
                });
            }
        };
        match role {
            Role::Pickle => {
                if size > limits.max_pickle_size {
                    return Err(Error::limit("pickle size", limits.max_pickle_size, size));
                }
                if let Some((previous, _)) = &pickle {
                    return Err(Error::corrupt(
                        &quoted,
                        format!("a second data.pkl (the first is `{}`)", clip(previous)),
                    ));
                }
                pickle = Some((name, entry));
            }
            Role::ByteOrder => byteorders.push((prefix.to_string(), entry)),
            Role::Storage(key) => storages.push((prefix.to_string(), key.into(), entry)),
            Role::Other | Role::TorchScript => {}
        }
    }

    let Some((pickle_name, pickle)) = pickle else {
        return Err(if torchscript {
            Error::Unsupported {
                what: "this is a TorchScript module (torch.jit.save), not a training checkpoint"
                    .into(),
            }
        } else {
            Error::NotAnArchive {
                reason: "a zip archive without data.pkl".into(),
            }
        });
    };
    let prefix = role(&pickle_name).0;
    let byteorder = byteorders
        .into_iter()
        .find(|(p, _)| p == prefix)
        .map(|(_, entry)| entry);
    let storages = storages
        .into_iter()
        .filter(|(p, _, _)| p == prefix)
        .map(|(_, key, entry)| (key, entry))
        .collect::<HashMap<_, _>>();
    let layout = ZipLayout {
        pickle,
        pickle_name,
        byteorder,
        storages,
    };
    Ok((layout, archive.into_inner()))
}

/// Bytes of an end-of-central-directory record without its comment.
const EOCD_LEN: usize = 22;
/// Bytes of a zip64 end-of-central-directory locator.
const LOCATOR_LEN: u64 = 20;
/// Bytes of a zip64 end-of-central-directory record without extensible data.
const EOCD64_LEN: u64 = 56;

/// The most entries that any end record near the end of the file declares: every record
/// the zip crate might settle on is looked at, so its count is known before the crate
/// parses (and allocates for) the central directory.
fn declared_entries<R: Read + Seek>(reader: &mut R, file_len: u64) -> Result<u64> {
    let io = |e| Error::io("zip end record", e);
    // The record, a comment of up to 64 KiB, and some slack.
    let tail_len = file_len.min(EOCD_LEN as u64 + (1 << 16) + 8);
    let tail_start = file_len.saturating_sub(tail_len);
    reader.seek(SeekFrom::Start(tail_start)).map_err(io)?;
    let mut tail = Vec::new();
    reader.take(tail_len).read_to_end(&mut tail).map_err(io)?;

    let mut most = 0u64;
    for (at, window) in tail.windows(EOCD_LEN).enumerate() {
        if !window.starts_with(b"PK\x05\x06") {
            continue;
        }
        let u16_at = |i: usize| le(window, i).map_or(0, u16::from_le_bytes);
        let u32_at = |i: usize| le(window, i).map_or(0, u32::from_le_bytes);
        let offset = tail_start.saturating_add(at as u64);
        let comment = u64::from(u16_at(20));
        if offset
            .saturating_add(EOCD_LEN as u64)
            .saturating_add(comment)
            > file_len
        {
            continue;
        }
        let on_disk = u64::from(u16_at(8));
        let files = u64::from(u16_at(10));
        most = most.max(on_disk).max(files);
        let zip64 =
            files == u64::from(u16::MAX) || u32_at(12) == u32::MAX || u32_at(16) == u32::MAX;
        if zip64 && offset >= LOCATOR_LEN {
            most = most.max(zip64_entries(reader, offset - LOCATOR_LEN)?);
        }
    }
    Ok(most)
}

/// The entry count of the zip64 end record that the locator at `locator` points to; 0
/// without a locator (the zip crate then reads the 32-bit record).
fn zip64_entries<R: Read + Seek>(reader: &mut R, locator: u64) -> Result<u64> {
    let io = |e| Error::io("zip64 end record", e);
    let mut buf = [0u8; LOCATOR_LEN as usize];
    reader.seek(SeekFrom::Start(locator)).map_err(io)?;
    if reader.read_exact(&mut buf).is_err() || !buf.starts_with(b"PK\x06\x07") {
        return Ok(0);
    }
    let declared = le(&buf, 8).map_or(0, u64::from_le_bytes);
    // Where the record ends right at the locator: at the declared offset, or just before.
    for start in [declared, locator.saturating_sub(EOCD64_LEN)] {
        let mut record = [0u8; EOCD64_LEN as usize];
        if start >= locator || reader.seek(SeekFrom::Start(start)).is_err() {
            continue;
        }
        if reader.read_exact(&mut record).is_err() || !record.starts_with(b"PK\x06\x06") {
            continue;
        }
        let field = |i: usize| le(&record, i).map_or(0, u64::from_le_bytes);
        if start.saturating_add(12).saturating_add(field(4)) == locator {
            return Ok(field(24).max(field(32)));
        }
    }
    Err(Error::Unsupported {
        what: "a zip64 archive whose end record is not where its locator points".into(),
    })
}

/// The `N` bytes at `at`, if there are that many.
fn le<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

enum Role<'n> {
    Pickle,
    ByteOrder,
    Storage(&'n str),
    TorchScript,
    Other,
}

/// The top folder of an entry and what the entry is: torch puts everything under one top
/// folder whose name is free (`archive/`, `yolov7/`, ...).
fn role(name: &str) -> (&str, Role<'_>) {
    let (prefix, rest) = name.split_once('/').unwrap_or(("", name));
    let role = match rest {
        "data.pkl" => Role::Pickle,
        "byteorder" => Role::ByteOrder,
        "constants.pkl" => Role::TorchScript,
        _ => match rest.strip_prefix("data/") {
            Some(key) if !key.is_empty() && !key.contains('/') => Role::Storage(key),
            _ if rest.starts_with("code/") => Role::TorchScript,
            _ => Role::Other,
        },
    };
    (prefix, role)
}

fn zip_error(error: ZipError, what: &str, file_len: u64) -> Error {
    match error {
        ZipError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Error::Truncated {
            what: what.to_string(),
            offset: file_len,
        },
        ZipError::Io(e) => Error::io(what, e),
        // Without its end record a zip that starts like one was cut short.
        ZipError::InvalidArchive(msg)
            if msg.contains("EOCD") || msg.contains("end of central directory") =>
        {
            Error::Truncated {
                what: format!("{what} ({msg})"),
                offset: file_len,
            }
        }
        other => Error::corrupt(what, other.to_string()),
    }
}
