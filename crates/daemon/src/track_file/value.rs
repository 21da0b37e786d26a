//! What a tracked file says: keepalived reads at most 127 bytes and takes `strtol(buf, NULL,
//! 0)` of them (track_file.c `process_track_file()`), so leading blanks, a sign, `0x` (hex) and
//! a leading `0` (octal) are understood, anything after the number is ignored, and a file that
//! is missing, empty or holds no number reads as 0. A number `long` cannot hold, or one outside
//! `INT32_MIN..=INT32_MAX + 1`, is refused and the previous value stands.

use std::io::Read as _;
use std::path::Path;

/// How much of the file keepalived reads.
const READ_LIMIT: usize = 127;

/// One reading of a tracked file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Value(i64),
    /// keepalived: "Invalid number %ld read from %s - ignoring".
    Invalid(i64),
}

/// The value of `content`, as keepalived reads it.
pub fn parse(content: &[u8]) -> Reading {
    let content = &content[..content.len().min(READ_LIMIT)];
    let (value, overflow) = strtol(content);
    if overflow || value < i64::from(i32::MIN) || value > i64::from(i32::MAX) + 1 {
        Reading::Invalid(value)
    } else {
        Reading::Value(value)
    }
}

/// Reads `path` now; a file that cannot be opened reads as 0.
pub fn read(path: &Path) -> Reading {
    let Ok(file) = std::fs::File::open(path) else {
        return Reading::Value(0);
    };
    let mut buf = Vec::with_capacity(READ_LIMIT);
    match file.take(READ_LIMIT as u64).read_to_end(&mut buf) {
        Ok(_) => parse(&buf),
        Err(_) => Reading::Value(0),
    }
}

/// C's `strtol(s, NULL, 0)` for a 64-bit `long`: the value, and whether it overflowed (ERANGE,
/// with the value saturated as C does).
fn strtol(s: &[u8]) -> (i64, bool) {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let radix: u32 = if s.get(i) == Some(&b'0')
        && matches!(s.get(i + 1), Some(b'x' | b'X'))
        && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        i += 2;
        16
    } else if s.get(i) == Some(&b'0') {
        8
    } else {
        10
    };
    // Accumulated as a negative number, which holds i64::MIN too.
    let mut value: i64 = 0;
    let mut overflow = false;
    while let Some(digit) = s.get(i).and_then(|&c| char::from(c).to_digit(radix)) {
        if !overflow {
            match value
                .checked_mul(i64::from(radix))
                .and_then(|v| v.checked_sub(i64::from(digit)))
            {
                Some(v) => value = v,
                None => overflow = true,
            }
        }
        i += 1;
    }
    if overflow {
        return (if negative { i64::MIN } else { i64::MAX }, true);
    }
    if negative {
        (value, false)
    } else {
        match value.checked_neg() {
            Some(v) => (v, false),
            None => (i64::MAX, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_strtol_reads_them() {
        assert_eq!(parse(b"42\n"), Reading::Value(42));
        assert_eq!(parse(b"  -7 apples"), Reading::Value(-7));
        assert_eq!(parse(b"+3"), Reading::Value(3));
        assert_eq!(parse(b"0x1f"), Reading::Value(31));
        assert_eq!(parse(b"010"), Reading::Value(8), "a leading 0 is octal");
        assert_eq!(parse(b"09"), Reading::Value(0), "9 is no octal digit");
        assert_eq!(parse(b"0x"), Reading::Value(0));
    }

    #[test]
    fn empty_and_garbage_read_as_zero() {
        assert_eq!(parse(b""), Reading::Value(0));
        assert_eq!(parse(b"\n"), Reading::Value(0));
        assert_eq!(parse(b"up"), Reading::Value(0));
        assert_eq!(parse(b"- 5"), Reading::Value(0));
    }

    #[test]
    fn out_of_range_is_refused() {
        assert_eq!(parse(b"2147483648"), Reading::Value(2_147_483_648));
        assert_eq!(parse(b"2147483649"), Reading::Invalid(2_147_483_649));
        assert_eq!(parse(b"-2147483648"), Reading::Value(-2_147_483_648));
        assert_eq!(parse(b"-2147483649"), Reading::Invalid(-2_147_483_649));
        assert_eq!(
            parse(b"99999999999999999999"),
            Reading::Invalid(i64::MAX),
            "ERANGE"
        );
        assert_eq!(parse(b"-99999999999999999999"), Reading::Invalid(i64::MIN));
    }

    #[test]
    fn only_the_first_127_bytes_count() {
        let mut content = vec![b' '; 126];
        content.extend_from_slice(b"56");
        assert_eq!(parse(&content), Reading::Value(5));
    }

    #[test]
    fn a_missing_file_reads_as_zero() {
        assert_eq!(
            read(Path::new("/nonexistent/halb/track")),
            Reading::Value(0)
        );
    }
}
