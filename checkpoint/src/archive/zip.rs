//! The PyTorch zip format: `<name>/data.pkl`, `<name>/data/<key>` storages, `<name>/byteorder`.
//!
//! The `zip` crate reads the central directory and locates each entry's data; the bytes are
//! then taken straight from the input (stored entries, as `torch.save` writes them) or
//! inflated on demand under the limits. Declared sizes are checked before anything is
//! inflated, so a zip bomb is refused without work.

use std::collections::HashMap;
use std::io::{Read, Seek};

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::Entry;
use crate::error::{Error, Result};
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
    reader: R,
    file_len: u64,
    limits: &Limits,
) -> Result<(ZipLayout, R)> {
    let mut archive = ZipArchive::new(reader).map_err(|e| zip_error(e, "zip archive", file_len))?;
    let count = archive.len() as u64;
    if count > limits.max_entries {
        return Err(Error::limit("zip entries", limits.max_entries, count));
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
            .ok_or_else(|| Error::corrupt(&name, "no local header"))?;
        let end = start
            .checked_add(compressed)
            .ok_or_else(|| Error::corrupt(&name, "size overflows"))?;
        if end > file_len {
            return Err(Error::Truncated {
                what: format!("zip entry `{name}`"),
                offset: file_len,
            });
        }
        let entry = match file.compression() {
            CompressionMethod::Stored => {
                if size != compressed {
                    return Err(Error::corrupt(
                        &name,
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
                    what: format!("compression method {other} of zip entry `{name}`"),
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
                        &name,
                        format!("a second data.pkl (the first is `{previous}`)"),
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
