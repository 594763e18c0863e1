//! Decoders for operands: `LONG` integers and the text forms of protocol 0.

/// A `LONG1`/`LONG4` payload (little-endian two's complement) as `i64`, if it fits.
pub(super) fn long_to_i64(bytes: &[u8]) -> Option<i64> {
    let Some(&last) = bytes.last() else {
        return Some(0);
    };
    let fill = if last & 0x80 != 0 { 0xff } else { 0x00 };
    let mut buf = [fill; 8];
    for (i, &b) in bytes.iter().enumerate() {
        match buf.get_mut(i) {
            Some(slot) => *slot = b,
            // Longer than 8 bytes: fits only if the rest is sign extension.
            None if b == fill => {}
            None => return None,
        }
    }
    let value = i64::from_le_bytes(buf);
    // The sign of the result must match the sign of the encoding.
    if (value < 0) == (fill == 0xff) {
        Some(value)
    } else {
        None
    }
}

/// Decodes Python's `raw-unicode-escape`: `\uXXXX` and `\UXXXXXXXX` escapes, every other
/// byte a Latin-1 code point.
pub(super) fn raw_unicode_escape(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            let digits = match bytes.get(i + 1) {
                Some(b'u') => 4,
                Some(b'U') => 8,
                _ => 0,
            };
            if digits > 0 {
                let hex = bytes.get(i + 2..i + 2 + digits)?;
                let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(char::from_u32(code)?);
                i += 2 + digits;
                continue;
            }
        }
        out.push(char::from(b));
        i += 1;
    }
    Some(out)
}

/// Decodes a protocol 0 `STRING` operand: a quoted Python literal with backslash escapes.
pub(super) fn string_literal(line: &[u8]) -> Option<Vec<u8>> {
    let (&first, rest) = line.split_first()?;
    let (&last, body) = rest.split_last()?;
    if !(first == last && (first == b'\'' || first == b'"')) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let esc = *body.get(i)?;
        i += 1;
        match esc {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'v' => out.push(0x0b),
            b'x' => {
                let hex = body.get(i..i + 2)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut value = u32::from(esc - b'0');
                let mut n = 1;
                while n < 3 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                            n += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(value & 0xff).ok()?);
            }
            b'\n' => {}
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs() {
        assert_eq!(long_to_i64(&[]), Some(0));
        assert_eq!(long_to_i64(&[0xff]), Some(-1));
        assert_eq!(long_to_i64(&[0x80, 0x00]), Some(128));
        assert_eq!(
            long_to_i64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Some(i64::MAX)
        );
        assert_eq!(long_to_i64(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0x00]), None);
        assert_eq!(
            long_to_i64(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Some(-2)
        );
        let magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
        assert_eq!(long_to_i64(&magic), None);
    }

    #[test]
    fn text_literals() {
        assert_eq!(string_literal(b"'a\\nb\\x41\\101'").unwrap(), b"a\nbAA");
        assert_eq!(
            raw_unicode_escape(b"caf\\u00e9 \xe9").unwrap(),
            "caf\u{e9} \u{e9}"
        );
        assert!(string_literal(b"'abc").is_none());
    }
}
