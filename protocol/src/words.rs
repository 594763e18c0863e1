//! Numbers and counts as people write them, for every program's output: the command
//! line's summaries, `inspect` and the web page.

/// `n` and the noun, singular for one: `1 run`, `3 runs`, `80 classes`.
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    format!(
        "{} {}",
        thousands(n),
        if n == 1 { singular } else { plural }
    )
}

/// `n` with thousands separated by commas: `6,228,762`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// An error or a tolerance as people write them: `0` for zero, else three digits and an
/// exponent (`9.155e-5`).
pub fn small_number(value: f64) -> String {
    if value == 0.0 {
        "0".to_owned()
    } else {
        format!("{value:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_plurals_read_as_written() {
        assert_eq!(count(1, "run", "runs"), "1 run");
        assert_eq!(count(0, "run", "runs"), "0 runs");
        assert_eq!(count(80, "class", "classes"), "80 classes");
        assert_eq!(count(1, "class", "classes"), "1 class");
        assert_eq!(thousands(6_228_762), "6,228,762");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(0), "0");
        assert_eq!(small_number(0.0), "0");
        assert_eq!(small_number(9.155e-5), "9.155e-5");
        assert_eq!(small_number(1e-4), "1.000e-4");
    }
}
