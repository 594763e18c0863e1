//! The legacy (pre-1.6, `_use_new_zipfile_serialization=False`) torch format: five pickles
//! in a row (magic number, protocol version, system info, the object, the storage keys),
//! then each storage's raw bytes prefixed by its element count as a 64-bit integer.

use std::collections::HashMap;

use super::Entry;
use super::source::Source;
use crate::error::{Error, Result, clip};
use crate::limits::{Budget, Limits};
use crate::pickle::{Graph, Node, Value, needed_len, run};
use crate::torch::{PidFormat, TorchHooks, check_key_len, storage_element_size};

/// `0x1950a86a20f9469cfc6c` as the little-endian bytes of its `LONG1` encoding.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// How much of the file to scan first for the end of a pickle; doubled on demand.
const FIRST_WINDOW: u64 = 1 << 20;

pub(crate) struct LegacyLayout {
    pub root: Value,
    pub big_endian: bool,
    pub storages: HashMap<Box<str>, Entry<'static>>,
}

/// Whether `head` starts like a legacy file: a protocol 2+ pickle of the magic number.
pub(crate) fn looks_legacy(head: &[u8]) -> bool {
    matches!(head, [0x80, 2..=5, ..])
}

pub(crate) fn parse(
    source: &Source<'_>,
    graph: &mut Graph,
    limits: &Limits,
    budget: &Budget,
) -> Result<LegacyLayout> {
    let mut hooks = TorchHooks::new(PidFormat::None);
    let mut pos = 0u64;
    let mut next = |what: &str, hooks: &mut TorchHooks, graph: &mut Graph| {
        next_pickle(source, &mut pos, what, graph, hooks, limits, budget)
    };

    let magic = next("legacy magic number", &mut hooks, graph)?;
    let is_magic = matches!(graph.get(magic), Some(Node::BigInt(bytes)) if bytes.as_ref() == MAGIC);
    if !is_magic {
        return Err(Error::NotAnArchive {
            reason: "a pickle, but not one written by torch.save".into(),
        });
    }
    let version = next("legacy protocol version", &mut hooks, graph)?;
    if graph.int(version) != Some(PROTOCOL_VERSION) {
        return Err(Error::Unsupported {
            what: format!(
                "legacy torch format version {}",
                clip(&graph.describe(version))
            ),
        });
    }
    let sys_info = next("legacy system info", &mut hooks, graph)?;
    let little_endian = match graph.dict_get(sys_info, "little_endian") {
        Some(Value::Bool(b)) => b,
        _ => true,
    };

    hooks.set_format(PidFormat::Legacy);
    let root = next("legacy pickle", &mut hooks, graph)?;
    hooks.set_format(PidFormat::None);
    let keys = next("legacy storage keys", &mut hooks, graph)?;
    let keys = graph
        .seq(keys)
        .ok_or_else(|| Error::corrupt("storage keys", "not a list"))?;

    let mut storages = HashMap::new();
    // The list's entries may all be one shared string: each is checked and paid for before
    // it is copied, so a long key repeated thousands of times costs nothing.
    for key in keys {
        let key = graph
            .str(*key)
            .ok_or_else(|| Error::corrupt("storage keys", "a key is not a string"))?;
        check_key_len("legacy storage key length", key.len())?;
        budget.charge_memory("storage table", 64u64.saturating_add(key.len() as u64))?;
        let key: Box<str> = key.into();
        let what = format!("legacy storage `{}`", clip(&key));
        let declared = hooks
            .declared()
            .get(&key)
            .ok_or_else(|| Error::corrupt(&what, "not referenced by the pickle"))?;
        let element_size =
            storage_element_size(&declared.type_name).ok_or_else(|| Error::Unsupported {
                what: format!("storage type `{}`", clip(&declared.type_name)),
            })?;
        let count_bytes = source.read(pos, 8, &what)?;
        let count: [u8; 8] = count_bytes
            .as_ref()
            .try_into()
            .map_err(|_| Error::corrupt(&what, "short element count"))?;
        let count = if little_endian {
            u64::from_le_bytes(count)
        } else {
            u64::from_be_bytes(count)
        };
        let len = count
            .checked_mul(element_size as u64)
            .ok_or_else(|| Error::corrupt(&what, "size overflows"))?;
        let start = pos.saturating_add(8);
        let end = start
            .checked_add(len)
            .ok_or_else(|| Error::corrupt(&what, "size overflows"))?;
        if end > source.len() {
            return Err(Error::Truncated {
                what,
                offset: source.len(),
            });
        }
        if storages.insert(key, Entry::Stored { start, len }).is_some() {
            return Err(Error::corrupt(what, "listed twice"));
        }
        pos = end;
    }
    Ok(LegacyLayout {
        root,
        big_endian: !little_endian,
        storages,
    })
}

/// Runs the pickle at `*pos` and moves `*pos` past it.
///
/// The machine always gets the same bytes however the file is read: the pickle through its
/// end (found by scanning a window that doubles from [`FIRST_WINDOW`]) or, when
/// no end is found, everything up to [`Limits::max_pickle_size`]. It runs once, so nothing
/// of a failed attempt is left in the graph.
fn next_pickle(
    source: &Source<'_>,
    pos: &mut u64,
    what: &str,
    graph: &mut Graph,
    hooks: &mut TorchHooks,
    limits: &Limits,
    budget: &Budget,
) -> Result<Value> {
    let remaining = source.len().saturating_sub(*pos);
    let most = remaining.min(limits.max_pickle_size);
    // Both paths look in the same windows and pay for each before it is read: a reader
    // holds what it read while the program runs, and a slice is charged alike so that
    // both answer the same.
    let mut window = most.min(FIRST_WINDOW);
    let mut paid = 0;
    let buf = loop {
        budget.charge_memory("pickle program", window.saturating_sub(paid))?;
        paid = window;
        let buf = source.read(*pos, window, what)?;
        if let Some(len) = needed_len(&buf) {
            let mut buf = buf;
            match &mut buf {
                std::borrow::Cow::Borrowed(bytes) => *bytes = bytes.get(..len).unwrap_or(bytes),
                std::borrow::Cow::Owned(bytes) => bytes.truncate(len),
            }
            break buf;
        }
        if window >= most {
            break buf;
        }
        window = window.saturating_mul(2).min(most);
    };
    match run(&buf, *pos, what, graph, hooks, limits, budget) {
        Ok(done) => {
            *pos = pos.saturating_add(done.consumed as u64);
            Ok(done.value)
        }
        // The pickle goes on past the limit: its exact length is unknown.
        Err(Error::Truncated { .. }) if buf.len() as u64 >= most && most < remaining => {
            Err(Error::limit(
                "pickle size",
                limits.max_pickle_size,
                limits.max_pickle_size.saturating_add(1),
            ))
        }
        Err(e) => Err(e),
    }
}
