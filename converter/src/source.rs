//! The input side: the checkpoint file mapped into memory (never copied whole), its
//! identity (size, SHA-256), and its tensors handed to tch.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};
use yolots_checkpoint::model::{DType, TensorRef};

use crate::checkpoint_api::Checkpoint;
use crate::error::{ConvertError, Result};
use crate::layers::WeightSource;

/// The mapped input file.
pub(crate) struct InputFile {
    map: Mmap,
    pub file_name: String,
    pub size: u64,
}

impl InputFile {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ConvertError::io(path, e))?;
        let size = file
            .metadata()
            .map_err(|e| ConvertError::io(path, e))?
            .len();
        // SAFETY: the map is read-only and lives as long as this struct. A file changed
        // underneath by another process could change what we read, but never memory
        // safety of this process beyond that (the reader bounds-checks every offset).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ConvertError::io(path, e))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(InputFile {
            map,
            file_name,
            size,
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Drops the mapped pages from this process's resident memory; they are read from
    /// the file again when touched.
    pub(crate) fn release_pages(&self) {
        // SAFETY: the map is read-only, so dropping its pages loses nothing: the kernel
        // reads them from the file again on the next access.
        let released = unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
        if let Err(error) = released {
            tracing::debug!(%error, "could not release the checkpoint's pages");
        }
    }

    /// SHA-256 of the whole file, lowercase hex.
    pub(crate) fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.map[..]))
    }
}

/// Weights read through the checkpoint reader.
pub(crate) struct CheckpointWeights<'c, 'a> {
    pub checkpoint: &'c Checkpoint<'a>,
    /// The mapped file the checkpoint reads from.
    pub file: &'c InputFile,
}

impl WeightSource for CheckpointWeights<'_, '_> {
    fn load(&self, r: &TensorRef) -> Result<Tensor> {
        let bytes = self
            .checkpoint
            .tensor_data(r)
            .map_err(ConvertError::Input)?;
        tensor_from_bytes(&bytes, r.dtype, &r.shape, &r.name)
    }

    fn release_cached(&self) {
        self.file.release_pages();
    }
}

fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::U8 => Kind::Uint8,
        DType::I8 => Kind::Int8,
        DType::I16 => Kind::Int16,
        DType::I32 => Kind::Int,
        DType::I64 => Kind::Int64,
        DType::Bool => Kind::Bool,
    }
}

/// An owned float32 CPU tensor from contiguous little-endian bytes of `dtype`.
///
/// The bytes are viewed in place (no copy) when aligned, and converted with exactly one
/// copy into the new float32 storage.
pub(crate) fn tensor_from_bytes(
    bytes: &[u8],
    dtype: DType,
    shape: &[usize],
    name: &str,
) -> Result<Tensor> {
    let dims = shape
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<std::result::Result<Vec<i64>, _>>()
        .map_err(|_| ConvertError::Unsupported(format!("tensor {name} too large")))?;
    let numel: usize = shape.iter().product();
    if numel.checked_mul(dtype.size()) != Some(bytes.len()) {
        return Err(ConvertError::Internal(format!(
            "tensor {name}: {} bytes for {numel} elements of {dtype:?}",
            bytes.len()
        )));
    }
    let kind = kind_of(dtype);
    if numel == 0 {
        return Ok(Tensor::f_zeros(&dims, (Kind::Float, Device::Cpu))?);
    }
    if (bytes.as_ptr() as usize).is_multiple_of(dtype.size()) {
        let strides = contiguous_strides(&dims);
        // SAFETY: `bytes` holds exactly `numel` elements of `kind`, suitably aligned, and
        // outlives the view: `to_dtype(.., copy = true)` below copies before returning.
        let view =
            unsafe { Tensor::f_from_blob(bytes.as_ptr(), &dims, &strides, kind, Device::Cpu)? };
        Ok(view.f_to_dtype(Kind::Float, false, true)?)
    } else {
        let owned = Tensor::f_from_data_size(bytes, &dims, kind)?;
        Ok(owned.f_to_kind(Kind::Float)?)
    }
}

fn contiguous_strides(dims: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1].max(1);
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_half_bytes_to_owned_float() {
        // 1.0, -2.0, 0.5 in IEEE half, little-endian.
        let bytes = [0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38];
        let t = tensor_from_bytes(&bytes, DType::F16, &[3], "t").unwrap();
        assert_eq!(t.kind(), Kind::Float);
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.0, -2.0, 0.5]);
    }

    #[test]
    fn float_bytes_are_copied_not_borrowed() {
        let data: Vec<u8> = [1.5f32, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = tensor_from_bytes(&data, DType::F32, &[2, 1], "t").unwrap();
        assert_ne!(t.data_ptr() as usize, data.as_ptr() as usize);
        drop(data);
        assert_eq!(
            Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(),
            vec![1.5, 2.5]
        );
    }

    #[test]
    fn wrong_byte_counts_are_errors() {
        assert!(tensor_from_bytes(&[0, 0, 0], DType::F16, &[2], "t").is_err());
    }
}
