//! Tensor layouts: how many storage elements a strided view reaches, whether it is
//! row-major contiguous, and gathering it into a contiguous buffer when it is not.

use crate::model::TensorRef;

/// The storage footprint of a tensor view, in elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub numel: u64,
    /// One past the last element reached, counted from the start of the storage.
    pub end: u64,
    pub contiguous: bool,
}

/// `None` when the sizes overflow `u64`.
pub(crate) fn footprint(tensor: &TensorRef) -> Option<Footprint> {
    if tensor.shape.len() != tensor.stride.len() {
        return None;
    }
    let mut numel: u64 = 1;
    let mut last: u64 = 0;
    for (&size, &stride) in tensor.shape.iter().zip(&tensor.stride) {
        let size = size as u64;
        numel = numel.checked_mul(size)?;
        if size > 0 {
            last = last.checked_add((size - 1).checked_mul(stride as u64)?)?;
        }
    }
    let offset = tensor.storage_offset as u64;
    let end = if numel == 0 {
        offset
    } else {
        offset.checked_add(last)?.checked_add(1)?
    };
    Some(Footprint {
        numel,
        end,
        contiguous: is_contiguous(&tensor.shape, &tensor.stride),
    })
}

/// Row-major contiguous, ignoring the strides of size-1 dimensions (PyTorch's rule).
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected: usize = 1;
    for (&size, &s) in shape.iter().zip(stride).rev() {
        if size != 1 && s != expected {
            return false;
        }
        expected = match expected.checked_mul(size) {
            Some(e) => e,
            None => return false,
        };
    }
    true
}

/// Copies the elements of a strided view of `storage` (which starts at the view's
/// storage offset) into a row-major buffer. `storage` must cover the footprint.
pub(crate) fn gather(storage: &[u8], shape: &[usize], stride: &[usize], element: usize) -> Vec<u8> {
    let numel = shape.iter().fold(1usize, |n, d| n.saturating_mul(*d));
    let mut out = Vec::with_capacity(numel.saturating_mul(element));
    if numel == 0 {
        return out;
    }
    // An odometer over the indices: no recursion, one addition per step.
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    for _ in 0..numel {
        let start = offset.saturating_mul(element);
        if let Some(bytes) = storage.get(start..start.saturating_add(element)) {
            out.extend_from_slice(bytes);
        }
        for dim in (0..shape.len()).rev() {
            let (Some(i), Some(&size), Some(&s)) =
                (index.get_mut(dim), shape.get(dim), stride.get(dim))
            else {
                break;
            };
            *i += 1;
            offset = offset.saturating_add(s);
            if *i < size {
                break;
            }
            offset = offset.saturating_sub(s.saturating_mul(size));
            *i = 0;
        }
    }
    out
}

/// Reverses the bytes of every `element`-byte value in place.
pub(crate) fn swap_bytes(data: &mut [u8], element: usize) {
    if element > 1 {
        for chunk in data.chunks_exact_mut(element) {
            chunk.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DType;

    fn tensor(shape: &[usize], stride: &[usize], offset: usize) -> TensorRef {
        TensorRef {
            name: "t".into(),
            dtype: DType::U8,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
            storage_offset: offset,
            storage_key: "0".into(),
        }
    }

    #[test]
    fn footprints() {
        let f = footprint(&tensor(&[2, 3], &[3, 1], 4)).unwrap();
        assert_eq!((f.numel, f.end, f.contiguous), (6, 10, true));
        let f = footprint(&tensor(&[3, 2], &[1, 3], 0)).unwrap();
        assert_eq!((f.numel, f.end, f.contiguous), (6, 6, false));
        let f = footprint(&tensor(&[0, 5], &[5, 1], 7)).unwrap();
        assert_eq!((f.numel, f.end), (0, 7));
        assert!(footprint(&tensor(&[usize::MAX, 3], &[3, 1], 0)).is_none());
        assert!(footprint(&tensor(&[1, 4], &[99, 1], 0)).unwrap().contiguous);
    }

    #[test]
    fn gathers_transposed() {
        // A 2x3 row-major matrix viewed transposed (3x2, strides [1, 3]).
        let storage = [0u8, 1, 2, 3, 4, 5];
        assert_eq!(
            gather(&storage, &[3, 2], &[1, 3], 1),
            vec![0, 3, 1, 4, 2, 5]
        );
        let storage16 = [0u8, 10, 1, 11, 2, 12, 3, 13];
        // Every other 2-byte element.
        assert_eq!(gather(&storage16, &[2], &[2], 2), vec![0, 10, 2, 12]);
    }
}
