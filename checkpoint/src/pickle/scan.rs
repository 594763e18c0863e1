//! Finds where a pickle ends without running it, from the operand sizes alone.
//!
//! A pickle read from a stream has no length up front (the legacy torch format puts five
//! in a row). Scanning first lets the reader hand the machine exactly the bytes a reading
//! from memory would give it, so both ways of reading build the same values, once.

use super::opcodes::*;

/// How many bytes at the start of `data` the pickle machine needs to finish the pickle
/// there: through its `STOP`, or through the first opcode the machine refuses whatever
/// follows. `None` when `data` ends first.
pub(crate) fn needed_len(data: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    loop {
        let op = *data.get(pos)?;
        let operand = pos.checked_add(1)?;
        let next = match op {
            STOP => return Some(operand),
            MARK | POP | POP_MARK | DUP | NONE | NEWTRUE | NEWFALSE | REDUCE | BINPERSID
            | APPEND | BUILD | DICT | EMPTY_DICT | APPENDS | LIST | EMPTY_LIST | OBJ | SETITEM
            | TUPLE | EMPTY_TUPLE | SETITEMS | TUPLE1 | TUPLE2 | TUPLE3 | NEWOBJ | NEWOBJ_EX
            | EMPTY_SET | ADDITEMS | FROZENSET | STACK_GLOBAL | MEMOIZE | READONLY_BUFFER => {
                operand
            }
            PROTO | BININT1 | BINGET | BINPUT => operand.checked_add(1)?,
            BININT2 => operand.checked_add(2)?,
            BININT | LONG_BINGET | LONG_BINPUT => operand.checked_add(4)?,
            BINFLOAT | FRAME => operand.checked_add(8)?,
            LONG1 | SHORT_BINSTRING | SHORT_BINUNICODE | SHORT_BINBYTES => {
                let len = usize::from(*data.get(operand)?);
                operand.checked_add(1)?.checked_add(len)?
            }
            LONG4 | BINSTRING => {
                let len = i32::from_le_bytes(field(data, operand)?);
                match usize::try_from(len) {
                    Ok(len) => operand.checked_add(4)?.checked_add(len)?,
                    // The machine refuses a negative length once it has read it.
                    Err(_) => return operand.checked_add(4),
                }
            }
            BINUNICODE | BINBYTES => {
                let len = u32::from_le_bytes(field(data, operand)?);
                operand
                    .checked_add(4)?
                    .checked_add(usize::try_from(len).ok()?)?
            }
            BINUNICODE8 | BINBYTES8 | BYTEARRAY8 => {
                let len = u64::from_le_bytes(field(data, operand)?);
                operand
                    .checked_add(8)?
                    .checked_add(usize::try_from(len).ok()?)?
            }
            INT | LONG | FLOAT | STRING | UNICODE | GET | PUT | PERSID => line_end(data, operand)?,
            GLOBAL | INST => line_end(data, line_end(data, operand)?)?,
            // Refused by the machine before it reads any operand.
            _ => return Some(operand),
        };
        if next > data.len() {
            return None;
        }
        pos = next;
    }
}

/// A fixed-size operand at `at`.
fn field<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Just past the `\n` that ends the line starting at `at`.
fn line_end(data: &[u8], at: usize) -> Option<usize> {
    let rest = data.get(at..)?;
    let newline = rest.iter().position(|&b| b == b'\n')?;
    at.checked_add(newline)?.checked_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_stop_of_each_pickle() {
        // {'a': 1} at protocol 2, then trailing bytes.
        let pickle = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.rest";
        assert_eq!(needed_len(pickle), Some(pickle.len() - 4));
        // Cut anywhere before the STOP: more is needed.
        for cut in 0..pickle.len() - 4 {
            assert_eq!(needed_len(&pickle[..cut]), None, "cut at {cut}");
        }
        // Protocol 0 lines.
        assert_eq!(needed_len(b"cos\nsystem\nI12\n."), Some(16));
        // A refused opcode ends the scan where the machine stops.
        assert_eq!(needed_len(b"\x80\x02\xff whatever"), Some(3));
        assert_eq!(needed_len(b"T\xff\xff\xff\xff"), Some(5));
        // A length past the data.
        assert_eq!(needed_len(b"\x8e\xff\xff\xff\xff\xff\xff\xff\x7f"), None);
    }
}
