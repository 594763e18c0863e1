//! Numbers for people: sizes, speeds, durations, counts and small errors.

/// `75.6 MB`, `812 KB`, `12 bytes` (decimal units, as file managers show them).
pub fn bytes(n: u64) -> String {
    const UNITS: [(&str, f64); 4] = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)];
    let value = n as f64;
    for (unit, scale) in UNITS {
        if value >= scale {
            let scaled = value / scale;
            return if scaled >= 100.0 {
                format!("{scaled:.0} {unit}")
            } else {
                format!("{scaled:.1} {unit}")
            };
        }
    }
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// `12.3 MB/s`.
pub fn speed(bytes_per_second: f64) -> String {
    if !bytes_per_second.is_finite() || bytes_per_second <= 0.0 {
        return "—".to_owned();
    }
    format!("{}/s", bytes(bytes_per_second as u64))
}

/// `1 h 2 min`, `3 min 05 s`, `12 s`, `0.4 s`, `40 ms` (a stage of a few milliseconds
/// would read `0.0 s`).
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".to_owned();
    }
    if seconds < 0.1 {
        return millis(seconds * 1e3);
    }
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{s} s")
    }
}

/// `37,620,125`, as `yolots inspect` writes counts.
pub use yolots_protocol::words::thousands as count;

/// An absolute error: `0`, `3.1e-6`, `0.0042`.
pub fn error(value: f64) -> String {
    if value == 0.0 {
        "0".to_owned()
    } else if !value.is_finite() {
        value.to_string()
    } else if value.abs() < 1e-3 || value.abs() >= 1e4 {
        format!("{value:.1e}")
    } else {
        format!("{value:.4}")
    }
}

/// Milliseconds with a sensible precision: `0.84 ms`, `12.3 ms`, `420 ms`.
pub fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A tensor shape: `[1, 25200, 8]`.
pub fn shape(dims: &[i64]) -> String {
    let inner: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// A floating-point type in the one spelling the page uses (`float16`, `float32`,
/// `bfloat16`): the reader says `f16`, the options `fp16`, the report `float16`.
pub fn dtype(name: &str) -> String {
    match name.trim().to_ascii_lowercase().as_str() {
        "f16" | "fp16" | "half" | "float16" => "float16".to_owned(),
        "f32" | "fp32" | "float" | "float32" => "float32".to_owned(),
        "f64" | "fp64" | "double" | "float64" => "float64".to_owned(),
        "bf16" | "bfloat16" => "bfloat16".to_owned(),
        _ => name.to_owned(),
    }
}

/// What the report says validated an ONNX artifact, with ONNX Runtime's build string
/// (`ORT Build Info: git-branch=rel-1.31.1, git-commit-id=..., build type=Release`)
/// reduced to its version, or left out when it names none.
pub fn loaded_with(text: &str) -> String {
    const BUILD: &str = "ORT Build Info:";
    let Some(start) = text.find(BUILD) else {
        return text.to_owned();
    };
    // The build string runs to the parenthesis after it (`(CPU)`), or to the end.
    let end = text[start..]
        .find(" (")
        .map_or(text.len(), |offset| start + offset);
    let version = text[start + BUILD.len()..end]
        .split(',')
        .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    let before = text[..start].trim_end();
    let after = &text[end..];
    match version {
        Some(version) => format!("{before} {version}{after}"),
        None => format!("{before}{after}"),
    }
}

/// An RFC 3339 time as `2026-01-31 14:05:09` (UTC, as the service sends it).
pub fn timestamp(rfc3339: &str) -> String {
    let trimmed = rfc3339.get(..19).unwrap_or(rfc3339);
    trimmed.replacen('T', " ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(999), "999 bytes");
        assert_eq!(bytes(75_600_000), "75.6 MB");
        assert_eq!(bytes(812_345), "812 KB");
        assert_eq!(speed(2_500_000.0), "2.5 MB/s");
        assert_eq!(speed(0.0), "—");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0.42), "0.4 s");
        assert_eq!(duration(0.042), "42.0 ms");
        assert_eq!(duration(0.0004), "0.40 ms");
        assert_eq!(duration(12.4), "12 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(3720.0), "1 h 2 min");
        assert_eq!(duration(f64::INFINITY), "—");
    }

    #[test]
    fn counts_and_errors() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234), "1,234");
        assert_eq!(count(37_620_125), "37,620,125");
        assert_eq!(error(0.0), "0");
        assert_eq!(error(0.0000031), "3.1e-6");
        assert_eq!(error(0.0042), "0.0042");
        assert_eq!(shape(&[1, 25200, 8]), "[1, 25200, 8]");
        assert_eq!(timestamp("2026-01-31T14:05:09.123Z"), "2026-01-31 14:05:09");
    }

    #[test]
    fn one_name_per_float_type() {
        for spelled in ["f16", "fp16", "float16", "F16"] {
            assert_eq!(dtype(spelled), "float16");
        }
        assert_eq!(dtype("fp32"), "float32");
        assert_eq!(dtype("bf16"), "bfloat16");
        assert_eq!(dtype("int8"), "int8");
    }

    #[test]
    fn onnx_runtime_by_its_version_not_its_build_string() {
        let tail =
            " (CPU), the written file with its inner raw and decoded values added as outputs";
        assert_eq!(
            loaded_with(&format!(
                "ONNX Runtime ORT Build Info: git-branch=rel-1.31.1, git-commit-id=6af1a93, build type=Release{tail}"
            )),
            format!("ONNX Runtime 1.31.1{tail}")
        );
        assert_eq!(
            loaded_with(&format!(
                "ONNX Runtime ORT Build Info: git-branch=HEAD, git-commit-id=6af1a93, fp8-kv-cache=1, build type=Release{tail}"
            )),
            format!("ONNX Runtime{tail}")
        );
        let clean = format!("ONNX Runtime 1.31.1{tail}");
        assert_eq!(loaded_with(&clean), clean);
        assert_eq!(loaded_with("libtorch 2.11.0"), "libtorch 2.11.0");
    }
}
