//! How hard a secret value is to guess, so weak values are refused when stored.
//!
//! Why it matters here: a guest cannot read a value, but it can test guesses (send a
//! candidate to an unbound host of its own and watch whether the scrubber hides it, or
//! compare the upstream's behaviour). A value that is cheap to guess leaks that way, so
//! values under [`MIN_BITS`] bits of estimated guessing work are refused unless the
//! operator overrides it (`--allow-weak-value`).
//!
//! The estimator is hand-written (`zxcvbn` 3.1 was considered: its regex/time/builder
//! dependencies are not in this project's dependency set, it takes `&str` while values are
//! bytes, and its English dictionaries add little for API keys). It is a conservative
//! floor, not an attacker model, built from:
//!
//! - the character pool of the classes present (lowercase 26, uppercase 26, digits 10,
//!   ASCII punctuation and space 33, control 33, bytes above 0x7f 128; hex-only values 16),
//!   giving `log2(pool)` bits per freely chosen character;
//! - a left-to-right parse in which a character is charged `log2(pool)` bits unless it
//!   starts one of: a repeat of earlier text (3+ bytes, charged the bits to name where it
//!   starts and how long it is), a run with a constant step of ±1 or ±2 (`abcd`, `9753`),
//!   or a common password or word from a short list (also in `l33t` spelling), each
//!   charged a few bits for the whole run;
//! - a cap: the empirical Shannon entropy of the bytes times the length.
//!
//! Only the first [`PREFIX_BYTES`] bytes are examined, which keeps the work bounded for
//! 64 KiB values (the parse is quadratic). That is safe: guessing a value means guessing
//! its prefix too, so a value whose prefix alone is estimated at `MIN_BITS` or more is at
//! least that strong.

/// Least estimated guessing work, in bits, for a value stored without the override.
pub const MIN_BITS: f64 = 64.0;

/// How many leading bytes of a value are examined.
pub const PREFIX_BYTES: usize = 256;

/// A value estimated under [`MIN_BITS`]. The estimate of a refused value may be shown (it
/// was never stored); the estimate of a stored value is never computed for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the value is easy to guess (estimated {estimated_bits} bits of guessing work; at least 64 are required): use a generated key, or pass --allow-weak-value to store it anyway"
)]
pub struct WeakValue {
    /// The estimate, rounded down.
    pub estimated_bits: u32,
}

/// `Ok(())` if `value` is estimated at [`MIN_BITS`] or more.
pub fn check(value: &[u8]) -> Result<(), WeakValue> {
    let bits = estimate_bits(value);
    if bits >= MIN_BITS {
        Ok(())
    } else {
        Err(WeakValue {
            // In 0..64 here: the cast cannot truncate.
            estimated_bits: bits.max(0.0).floor() as u32,
        })
    }
}

/// Common passwords and words, lowercase, at least 3 characters. Matched anywhere,
/// case-insensitively and after undoing common `l33t` substitutions.
#[rustfmt::skip]
const COMMON: &[&str] = &[
    "password", "passwd", "secret", "qwerty", "qwertz", "azerty", "letmein", "welcome",
    "admin", "administrator", "root", "login", "master", "changeme", "default", "hunter",
    "dragon", "monkey", "shadow", "sunshine", "princess", "football", "baseball",
    "iloveyou", "trustno1", "superman", "batman", "starwars", "whatever", "freedom",
    "token", "apikey", "test", "guest", "user", "access", "summer", "winter", "spring",
    "autumn", "hello", "love", "abc123", "asdf", "zxcv", "1qaz", "2wsx", "pass", "key",
];

/// Bits charged for naming one entry of [`COMMON`] plus its capitalisation and spelling.
fn common_word_bits() -> f64 {
    (COMMON.len() as f64).log2() + 2.0
}

/// Estimated bits of guessing work for `value` (its first [`PREFIX_BYTES`] bytes).
pub fn estimate_bits(value: &[u8]) -> f64 {
    let v = &value[..value.len().min(PREFIX_BYTES)];
    if v.is_empty() {
        return 0.0;
    }
    parse_bits(v).min(shannon_bits(v))
}

fn pool_size(v: &[u8]) -> f64 {
    let hex_lower = v
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let hex_upper = v
        .iter()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b));
    if (hex_lower || hex_upper) && !v.iter().all(u8::is_ascii_digit) {
        return 16.0;
    }
    let mut pool = 0.0;
    type Class = (fn(&u8) -> bool, f64);
    let classes: [Class; 6] = [
        (u8::is_ascii_lowercase, 26.0),
        (u8::is_ascii_uppercase, 26.0),
        (u8::is_ascii_digit, 10.0),
        (|b| b.is_ascii_punctuation() || *b == b' ', 33.0),
        (|b| b.is_ascii_control(), 33.0),
        (|b| *b >= 0x80, 128.0),
    ];
    for (is, size) in classes {
        if v.iter().any(is) {
            pool += size;
        }
    }
    pool
}

fn shannon_bits(v: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &b in v {
        counts[usize::from(b)] += 1;
    }
    let n = v.len() as f64;
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    h * n
}

/// Undoes common `l33t` spellings and case, for matching [`COMMON`].
fn plain(b: u8) -> u8 {
    match b.to_ascii_lowercase() {
        b'0' => b'o',
        b'1' | b'!' => b'i',
        b'3' => b'e',
        b'4' | b'@' => b'a',
        b'5' | b'$' => b's',
        b'7' => b't',
        other => other,
    }
}

/// Length of the longest [`COMMON`] entry starting at `i` (0 if none).
fn common_at(v: &[u8], i: usize) -> usize {
    COMMON
        .iter()
        .filter(|w| {
            let w = w.as_bytes();
            v.len() - i >= w.len()
                && v[i..i + w.len()]
                    .iter()
                    .zip(w)
                    .all(|(a, b)| a.to_ascii_lowercase() == *b || plain(*a) == plain(*b))
        })
        .map(|w| w.len())
        .max()
        .unwrap_or(0)
}

/// Length of the longest earlier occurrence of the text starting at `i` (overlap allowed).
fn repeat_at(v: &[u8], i: usize) -> usize {
    (0..i)
        .map(|j| {
            v[i..]
                .iter()
                .zip(&v[j..])
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Length of the run starting at `i` whose bytes step by a constant ±1 or ±2.
fn sequence_at(v: &[u8], i: usize) -> usize {
    if v.len() - i < 2 {
        return v.len() - i;
    }
    let step = i16::from(v[i + 1]) - i16::from(v[i]);
    if !(1..=2).contains(&step.abs()) {
        return 1;
    }
    let mut len = 2;
    while i + len < v.len() && i16::from(v[i + len]) - i16::from(v[i + len - 1]) == step {
        len += 1;
    }
    len
}

fn parse_bits(v: &[u8]) -> f64 {
    let per_char = pool_size(v).log2();
    let mut bits = 0.0;
    let mut i = 0;
    while i < v.len() {
        let literal = per_char;
        // Candidates: (length covered, bits charged), each only if it covers 3+ bytes.
        let mut best = (1, literal);
        let word = common_at(v, i);
        if word >= 3 {
            best = (word, common_word_bits().min(word as f64 * per_char));
        }
        let rep = repeat_at(v, i);
        if rep >= 3 && rep >= best.0 {
            let cost = (i as f64).log2().max(0.0) + (rep as f64).log2() + 1.0;
            best = (rep, cost.min(rep as f64 * per_char));
        }
        let seq = sequence_at(v, i);
        if seq >= 3 && seq > best.0 {
            let cost = per_char + (seq as f64).log2() + 2.0;
            best = (seq, cost.min(seq as f64 * per_char));
        }
        bits += best.1;
        i += best.0;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(s: &str) -> f64 {
        estimate_bits(s.as_bytes())
    }

    /// Deterministic "random" text from an alphabet (xorshift), for realistic keys.
    fn random(alphabet: &[u8], n: usize, seed: u64) -> String {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(alphabet[(x % alphabet.len() as u64) as usize])
            })
            .collect()
    }

    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const HEX: &[u8] = b"0123456789abcdef";
    const MIXED: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@#$%^&*()-_=+[]{};:,.?";

    pub(crate) fn realistic() -> Vec<String> {
        vec![
            format!(
                "xoxb-{}-{}-{}",
                random(b"0123456789", 10, 1),
                random(b"0123456789", 13, 2),
                random(ALNUM, 24, 3)
            ),
            format!("sk-{}", random(ALNUM, 48, 4)),
            random(HEX, 32, 5),
            random(MIXED, 20, 6),
            random(ALNUM, 40, 7),
        ]
    }

    #[test]
    fn accepts_realistic_keys() {
        for k in realistic() {
            assert!(check(k.as_bytes()).is_ok(), "{k}: {:.1} bits", bits(&k));
        }
        for seed in 10..60 {
            let k = random(HEX, 32, seed);
            assert!(bits(&k) >= MIN_BITS, "{k}: {:.1}", bits(&k));
            let k = random(MIXED, 20, seed);
            assert!(bits(&k) >= MIN_BITS, "{k}: {:.1}", bits(&k));
        }
    }

    #[test]
    fn rejects_weak_values() {
        for w in [
            "password123",
            "hunter2",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abcdefghijklmnop",
            "1234567890123456",
            "s3cret",
            "monkeymonkeymonkeymonkey",
            "passwordpassword",
            "sunshinesunshinesunshine",
            "elephantelephantelephant",
            "P@ssw0rd!P@ssw0rd!",
            "qwertyuiop",
            "zyxwvutsrqponmlkjihgfedcba",
            "Summer2024!",
            "v1",
            "x",
        ] {
            let e = check(w.as_bytes()).expect_err(w);
            assert!(f64::from(e.estimated_bits) < MIN_BITS, "{w}");
        }
    }

    #[test]
    fn refusal_names_the_override() {
        let e = check(b"hunter2").expect_err("weak");
        assert!(e.to_string().contains("--allow-weak-value"), "{e}");
    }

    #[test]
    fn examines_a_bounded_prefix_only() {
        // A strong prefix makes the value strong whatever follows.
        let mut v = realistic()[1].clone().into_bytes();
        v.extend(std::iter::repeat_n(b'a', 64 * 1024 - v.len()));
        let t = std::time::Instant::now();
        assert!(check(&v).is_ok());
        // A weak prefix refuses even when random text follows it.
        let mut w = vec![b'a'; PREFIX_BYTES];
        w.extend_from_slice(realistic()[1].as_bytes());
        assert!(check(&w).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn accepts_binary_random_values() {
        let v: Vec<u8> = (0..32u64)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
            .collect();
        assert!(check(&v).is_ok(), "{:.1}", estimate_bits(&v));
    }
}
