//! Opening checkpoints ([`Checkpoint`]) and handing out tensor bytes.

mod legacy;
mod source;
mod strided;
mod zip;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

pub use source::ReadSeek;

use self::source::Source;
use crate::error::{Error, Result, clip};
use crate::limits::{Budget, Limits};
use crate::model::{DType, ModelDescription, TensorRef};
use crate::pickle::{Graph, Value, run};
use crate::torch::{PidFormat, TorchHooks};

/// Which container format the checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// The zip format of `torch.save` since PyTorch 1.6.
    Zip,
    /// The older single-stream format (magic number, pickles, raw storages).
    Legacy,
    /// Assembled by [`Checkpoint::from_parts`].
    Parts,
}

/// Where a storage's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Entry<'a> {
    /// `len` bytes at `start` of the input.
    Stored { start: u64, len: u64 },
    /// A deflated zip entry, inflated on demand.
    Deflated {
        start: u64,
        compressed: u64,
        len: u64,
        crc32: u32,
        name: String,
    },
    /// Bytes the caller supplied.
    Slice(&'a [u8]),
}

impl Entry<'_> {
    fn len(&self) -> u64 {
        match self {
            Entry::Stored { len, .. } | Entry::Deflated { len, .. } => *len,
            Entry::Slice(bytes) => bytes.len() as u64,
        }
    }
}

/// An opened PyTorch checkpoint: the pickled object graph, and the storages its tensors
/// live in.
///
/// Opening runs the restricted pickle machine over the whole pickle (nothing in it is
/// executed) and indexes the storages; tensor bytes are only touched by
/// [`tensor_data`](Self::tensor_data). With [`from_bytes`](Self::from_bytes) they are
/// borrowed from the input; with [`from_reader`](Self::from_reader) they are read on demand
/// (the reader sits behind a lock, so a `Checkpoint` is `Send + Sync` either way).
pub struct Checkpoint<'a> {
    graph: Graph,
    root: Value,
    format: ArchiveFormat,
    big_endian: bool,
    storages: HashMap<Box<str>, Entry<'a>>,
    source: Source<'a>,
    limits: Limits,
    /// What this read has spent of `limits.max_memory` and `limits.max_steps`; opening
    /// charges it, and so do [`describe`](Self::describe) and tensor reads.
    budget: Budget,
    /// Deflated entries already inflated, by where their data starts: each is inflated at
    /// most once per checkpoint, however many tensors share it.
    inflated: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
}

impl std::fmt::Debug for Checkpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("format", &self.format)
            .field("big_endian", &self.big_endian)
            .field("values", &self.graph.len())
            .field("storages", &self.storages.len())
            .field("bytes", &self.source.len())
            .finish()
    }
}

/// What the first bytes say the input is.
enum Kind {
    Empty,
    Zip,
    Legacy,
    Tar,
    Unknown,
}

fn sniff(head: &[u8]) -> Kind {
    if head.is_empty() {
        Kind::Empty
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Kind::Zip
    } else if legacy::looks_legacy(head) {
        Kind::Legacy
    } else if head.get(257..262) == Some(b"ustar") {
        Kind::Tar
    } else {
        Kind::Unknown
    }
}

impl<'a> Checkpoint<'a> {
    /// Opens a checkpoint held in memory; tensor bytes stay borrowed from `bytes`.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self> {
        Self::from_bytes_with_limits(bytes, Limits::default())
    }

    /// [`from_bytes`](Self::from_bytes) with explicit [`Limits`].
    pub fn from_bytes_with_limits(bytes: &'a [u8], limits: Limits) -> Result<Self> {
        let head = bytes.get(..512).unwrap_or(bytes);
        let budget = Budget::new(&limits);
        Self::open_source(sniff(head), Source::Bytes(bytes), &limits, budget)
    }

    /// Opens a checkpoint from a reader: the pickle is read now, tensor bytes when asked for.
    pub fn from_reader<R: Read + Seek + Send + 'a>(reader: R) -> Result<Self> {
        Self::from_reader_with_limits(reader, Limits::default())
    }

    /// [`from_reader`](Self::from_reader) with explicit [`Limits`].
    pub fn from_reader_with_limits<R: Read + Seek + Send + 'a>(
        mut reader: R,
        limits: Limits,
    ) -> Result<Self> {
        let io = |e| Error::io("the input", e);
        let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
        reader.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut head = Vec::with_capacity(512);
        (&mut reader).take(512).read_to_end(&mut head).map_err(io)?;
        let kind = sniff(&head);
        let budget = Budget::new(&limits);
        if let Kind::Zip = kind {
            // The zip crate needs the reader itself for the central directory.
            let (layout, reader) = zip::layout(reader, len, &limits)?;
            let source = Source::Reader {
                reader: Mutex::new(Box::new(reader)),
                len,
            };
            return Self::open_zip(source, layout, &limits, budget);
        }
        let source = Source::Reader {
            reader: Mutex::new(Box::new(reader)),
            len,
        };
        Self::open_source(kind, source, &limits, budget)
    }

    /// Opens a checkpoint file (reads the pickle now, tensors on demand).
    #[cfg(all(feature = "fs", not(target_arch = "wasm32")))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Checkpoint<'static>> {
        let path = path.as_ref();
        let file =
            std::fs::File::open(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Checkpoint::from_reader(std::io::BufReader::new(file))
    }

    /// Assembles a checkpoint from a zip-format pickle (`data.pkl`) and its storages by key,
    /// for storages that are already in memory (tools, tests, fuzzing).
    pub fn from_parts<I>(pickle: &[u8], storages: I, limits: Limits) -> Result<Self>
    where
        I: IntoIterator<Item = (String, &'a [u8])>,
    {
        let storages = storages
            .into_iter()
            .map(|(key, bytes)| (key.into_boxed_str(), Entry::Slice(bytes)))
            .collect();
        let budget = Budget::new(&limits);
        let (graph, root) = run_zip_pickle(pickle, "data.pkl", &limits, &budget)?;
        Ok(Checkpoint {
            graph,
            root,
            format: ArchiveFormat::Parts,
            big_endian: false,
            storages,
            source: Source::None,
            budget,
            limits,
            inflated: Mutex::default(),
        })
    }

    fn open_source(
        kind: Kind,
        source: Source<'a>,
        limits: &Limits,
        budget: Budget,
    ) -> Result<Self> {
        match kind {
            Kind::Empty => Err(Error::NotAnArchive {
                reason: "the file is empty".into(),
            }),
            Kind::Zip => {
                // Readers holding zip archives are opened by `from_reader` directly.
                let Source::Bytes(bytes) = source else {
                    return Err(Error::NotAnArchive {
                        reason: "a zip archive behind an unexpected source".into(),
                    });
                };
                let (layout, _) =
                    zip::layout(std::io::Cursor::new(bytes), bytes.len() as u64, limits)?;
                Self::open_zip(Source::Bytes(bytes), layout, limits, budget)
            }
            Kind::Legacy => {
                let mut graph = Graph::new(limits.max_objects);
                let layout = legacy::parse(&source, &mut graph, limits, &budget)?;
                Ok(Checkpoint {
                    graph,
                    root: layout.root,
                    format: ArchiveFormat::Legacy,
                    big_endian: layout.big_endian,
                    storages: layout.storages,
                    source,
                    limits: limits.clone(),
                    budget,
                    inflated: Mutex::default(),
                })
            }
            Kind::Tar => Err(Error::Unsupported {
                what: "the tar-based checkpoint format of PyTorch before 0.4".into(),
            }),
            Kind::Unknown => Err(Error::NotAnArchive {
                reason: "neither a zip archive nor a legacy torch.save file".into(),
            }),
        }
    }

    fn open_zip(
        source: Source<'a>,
        layout: zip::ZipLayout,
        limits: &Limits,
        budget: Budget,
    ) -> Result<Self> {
        let pickle_name = clip(&layout.pickle_name);
        // The program is held while it runs when it is read through a reader: paid in
        // both paths, so reading from memory and through a reader answer alike.
        if let Entry::Stored { len, .. } = &layout.pickle {
            budget.charge_memory("pickle program", *len)?;
        }
        let pickle = read_entry(&source, &layout.pickle, &pickle_name, &budget)?;
        let big_endian = match &layout.byteorder {
            None => false,
            Some(entry) if entry.len() > 16 => {
                return Err(Error::corrupt("byteorder", "longer than a byte-order name"));
            }
            Some(entry) => match read_entry(&source, entry, "byteorder", &budget)?.as_ref() {
                b"little" => false,
                b"big" => true,
                other => {
                    return Err(Error::corrupt(
                        "byteorder",
                        format!("unknown byte order {:?}", String::from_utf8_lossy(other)),
                    ));
                }
            },
        };
        let (graph, root) = run_zip_pickle(&pickle, &pickle_name, limits, &budget)?;
        drop(pickle);
        Ok(Checkpoint {
            graph,
            root,
            format: ArchiveFormat::Zip,
            big_endian,
            storages: layout.storages,
            source,
            limits: limits.clone(),
            budget,
            inflated: Mutex::default(),
        })
    }

    /// What this read has spent so far of its memory and work allowances
    /// ([`Limits::max_memory`], [`Limits::max_steps`]).
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The limits this checkpoint is read under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The container format.
    pub fn format(&self) -> ArchiveFormat {
        self.format
    }

    /// Whether the storages were written big-endian (tensor data is converted on the way out).
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }

    /// The unpickled value graph (for tools that look beyond the model).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The top-level value of the pickle (a dict for YOLOv7 checkpoints).
    pub fn root(&self) -> Value {
        self.root
    }

    /// Number of storages in the archive.
    pub fn storage_count(&self) -> usize {
        self.storages.len()
    }

    /// Size in bytes of the storage `key`, if present.
    pub fn storage_len(&self, key: &str) -> Option<u64> {
        self.storages.get(key).map(Entry::len)
    }

    /// Describes the YOLOv7 model: `ema` when present (and not `None`), else `model`.
    pub fn describe(&self) -> Result<ModelDescription> {
        crate::describe::describe(self)
    }

    /// Checks that `tensor` fits in its storage without reading any bytes.
    pub fn check_tensor(&self, tensor: &TensorRef) -> Result<()> {
        self.locate(tensor).map(|_| ())
    }

    fn locate(&self, tensor: &TensorRef) -> Result<(&Entry<'a>, strided::Footprint)> {
        let entry = self
            .storages
            .get(tensor.storage_key.as_str())
            .ok_or_else(|| {
                Error::corrupt(
                    format!("data/{}", clip(&tensor.storage_key)),
                    format!("storage of tensor `{}` is missing", clip(&tensor.name)),
                )
            })?;
        let footprint = strided::footprint(tensor).ok_or_else(|| {
            Error::corrupt(
                format!("data/{}", clip(&tensor.storage_key)),
                format!(
                    "tensor `{}`: shape and strides overflow",
                    clip(&tensor.name)
                ),
            )
        })?;
        let needed = footprint.end.checked_mul(tensor.dtype.size() as u64);
        let available = entry.len();
        match needed {
            Some(needed) if needed <= available => Ok((entry, footprint)),
            _ => Err(Error::StorageTooSmall {
                tensor: clip(&tensor.name),
                needed: needed.unwrap_or(u64::MAX),
                available,
            }),
        }
    }

    /// The elements of `tensor`: exactly `numel * dtype.size()` bytes, row-major contiguous,
    /// little-endian. Borrowed from the input when the checkpoint was opened from bytes and
    /// the view is contiguous and little-endian; copied otherwise.
    pub fn tensor_data(&self, tensor: &TensorRef) -> Result<Cow<'a, [u8]>> {
        let (entry, footprint) = self.locate(tensor)?;
        let element = tensor.dtype.size() as u64;
        if footprint.numel == 0 {
            return Ok(Cow::Borrowed(&[]));
        }
        // Zero strides let a tiny storage declare a huge tensor: bound what gets built.
        let bytes = footprint.numel.saturating_mul(element);
        if bytes > self.limits.max_entry_size {
            return Err(Error::limit(
                "tensor size",
                self.limits.max_entry_size,
                bytes,
            ));
        }
        // More than the storage holds is built from repeated elements: only as much as the
        // budget has left.
        if bytes > entry.len() {
            self.budget
                .check_memory("tensor built from repeated elements", bytes)?;
        }
        // `locate` checked that `end * element` fits, so these products cannot overflow.
        let start = (tensor.storage_offset as u64).saturating_mul(element);
        let len = if footprint.contiguous {
            footprint.numel.saturating_mul(element)
        } else {
            footprint.end.saturating_mul(element).saturating_sub(start)
        };
        let what = format!("storage of tensor `{}`", clip(&tensor.name));
        let raw = self.read_range(entry, start, len, &what)?;
        let mut data = if footprint.contiguous {
            raw
        } else {
            let element = tensor.dtype.size();
            Cow::Owned(strided::gather(
                &raw,
                &tensor.shape,
                &tensor.stride,
                element,
            ))
        };
        if self.big_endian && tensor.dtype.size() > 1 {
            strided::swap_bytes(data.to_mut(), tensor.dtype.size());
        }
        Ok(data)
    }

    /// The elements of `tensor` converted to `f32` (any element type; integers and booleans
    /// as their value).
    pub fn tensor_f32(&self, tensor: &TensorRef) -> Result<Vec<f32>> {
        let data = self.tensor_data(tensor)?;
        Ok(to_f32(&data, tensor.dtype))
    }

    fn read_range(
        &self,
        entry: &Entry<'a>,
        start: u64,
        len: u64,
        what: &str,
    ) -> Result<Cow<'a, [u8]>> {
        let truncated = || Error::Truncated {
            what: what.to_string(),
            offset: entry.len(),
        };
        let end = start.checked_add(len).ok_or_else(truncated)?;
        match entry {
            Entry::Stored { start: base, .. } => {
                let from = base.checked_add(start).ok_or_else(truncated)?;
                self.source.read(from, len, what)
            }
            Entry::Deflated { start: at, .. } => {
                let all = self.inflated(*at, entry, what)?;
                let range = usize::try_from(start).map_err(|_| truncated())?
                    ..usize::try_from(end).map_err(|_| truncated())?;
                all.get(range)
                    .map(|b| Cow::Owned(b.to_vec()))
                    .ok_or_else(truncated)
            }
            Entry::Slice(bytes) => {
                let bytes: &'a [u8] = bytes;
                let range = usize::try_from(start).map_err(|_| truncated())?
                    ..usize::try_from(end).map_err(|_| truncated())?;
                bytes.get(range).map(Cow::Borrowed).ok_or_else(truncated)
            }
        }
    }
}

/// The whole content of an entry (inflated if needed, the inflated bytes paid from
/// `budget` first).
fn read_entry<'a>(
    source: &Source<'a>,
    entry: &Entry<'a>,
    what: &str,
    budget: &Budget,
) -> Result<Cow<'a, [u8]>> {
    match entry {
        Entry::Stored { start, len } => source.read(*start, *len, what),
        Entry::Deflated {
            start,
            compressed,
            len,
            crc32,
            name,
        } => {
            budget.charge_memory("inflated zip entries", *len)?;
            source
                .inflate(*start, *compressed, *len, *crc32, &clip(name), what)
                .map(Cow::Owned)
        }
        Entry::Slice(bytes) => Ok(Cow::Borrowed(bytes)),
    }
}

impl<'a> Checkpoint<'a> {
    /// The inflated bytes of the deflated entry whose data starts at `at`, inflated on first
    /// use only (the lock is held meanwhile, so concurrent readers wait instead of
    /// inflating it again).
    fn inflated(&self, at: u64, entry: &Entry<'a>, what: &str) -> Result<Arc<Vec<u8>>> {
        let mut cache = self.inflated.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bytes) = cache.get(&at) {
            return Ok(Arc::clone(bytes));
        }
        let bytes = Arc::new(read_entry(&self.source, entry, what, &self.budget)?.into_owned());
        cache.insert(at, Arc::clone(&bytes));
        Ok(bytes)
    }
}

fn run_zip_pickle(
    pickle: &[u8],
    name: &str,
    limits: &Limits,
    budget: &Budget,
) -> Result<(Graph, Value)> {
    let mut graph = Graph::new(limits.max_objects);
    let mut hooks = TorchHooks::new(PidFormat::Zip);
    let done = run(pickle, 0, name, &mut graph, &mut hooks, limits, budget)?;
    Ok((graph, done.value))
}

/// Little-endian elements of `dtype` as `f32`.
fn to_f32(data: &[u8], dtype: DType) -> Vec<f32> {
    fn each<const N: usize>(data: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        data.chunks_exact(N)
            .map(|c| {
                let mut buf = [0u8; N];
                buf.copy_from_slice(c);
                f(buf)
            })
            .collect()
    }
    match dtype {
        DType::F16 => each(data, |b| half::f16::from_le_bytes(b).to_f32()),
        DType::BF16 => each(data, |b| half::bf16::from_le_bytes(b).to_f32()),
        DType::F32 => each(data, f32::from_le_bytes),
        DType::F64 => each(data, |b| f64::from_le_bytes(b) as f32),
        DType::U8 => each(data, |[b]: [u8; 1]| f32::from(b)),
        DType::I8 => each(data, |b| f32::from(i8::from_le_bytes(b))),
        DType::Bool => each(data, |[b]: [u8; 1]| if b != 0 { 1.0 } else { 0.0 }),
        DType::I16 => each(data, |b| f32::from(i16::from_le_bytes(b))),
        DType::I32 => each(data, |b| i32::from_le_bytes(b) as f32),
        DType::I64 => each(data, |b| i64::from_le_bytes(b) as f32),
    }
}
