//! Bodies that are compressed whatever their headers say.
//!
//! The host asks for `identity` and refuses a body in a declared content coding, but an
//! upstream can send gzip, zlib or zstd bytes with no `Content-Encoding` at all (a download,
//! or an echo hidden from the scrubber). A body that starts with one of those magics is
//! inflated here, bounded in size and by the run's deadline, so that the host can look for
//! values in it; the host never hands inflated bytes to the guest, and never redacts inside
//! compressed ones.

use flate2::read::{MultiGzDecoder, ZlibDecoder};
use std::io::Read;
use std::time::Instant;
use zeroize::Zeroizing;

/// Bytes inflated between two looks at the clock.
const CHUNK: usize = 64 * 1024;

/// The zstd frame magic (little-endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The length of the zstd skippable frame `body` starts with, header included (magic
/// 0x184D2A50–5F little-endian, then a 4-byte length): the zstd program skips such frames
/// and inflates what follows, so a value can hide after one.
fn skippable_frame(body: &[u8]) -> Option<usize> {
    match body {
        [m, 0x2a, 0x4d, 0x18, a, b, c, d, ..] if m & 0xf0 == 0x50 => {
            let len = u32::from_le_bytes([*a, *b, *c, *d]);
            Some(8usize.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)))
        }
        _ => None,
    }
}

/// Why a compressed body could not be checked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InflateError {
    /// It inflates to more than the bound.
    #[error("it inflates to more than {0} bytes")]
    TooLarge(usize),
    /// The deadline passed while inflating.
    #[error("inflating it did not finish before the deadline")]
    Deadline,
}

/// The compression a body starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Gzip,
    Zlib,
    Zstd,
}

impl Format {
    /// The format whose magic `body` starts with. zlib has no magic, only a header whose
    /// two bytes are a multiple of 31 with deflate as the method and no preset dictionary.
    fn of(body: &[u8]) -> Option<Format> {
        match body {
            [0x1f, 0x8b, ..] => Some(Format::Gzip),
            [a, b, ..]
                if a & 0x0f == 8
                    && a >> 4 <= 7
                    && b & 0x20 == 0
                    && (u16::from(*a) << 8 | u16::from(*b)) % 31 == 0 =>
            {
                Some(Format::Zlib)
            }
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Format::Zstd),
            _ if skippable_frame(body).is_some() => Some(Format::Zstd),
            _ => None,
        }
    }
}

/// `body` inflated, if it starts with a gzip, zlib or zstd magic (`None` otherwise). At
/// most `max` bytes: a body that inflates to more is an error, as is a passed `deadline`.
/// Corrupt or truncated data gives what inflated before the damage, which is what a guest
/// could get out of it too.
pub(crate) fn inflate(
    body: &[u8],
    max: usize,
    deadline: Instant,
) -> Result<Option<Zeroizing<Vec<u8>>>, InflateError> {
    let Some(format) = Format::of(body) else {
        return Ok(None);
    };
    let mut out = Zeroizing::new(Vec::new());
    match format {
        Format::Gzip => read_bounded(MultiGzDecoder::new(body), &mut out, max, deadline)?,
        Format::Zlib => read_bounded(ZlibDecoder::new(body), &mut out, max, deadline)?,
        Format::Zstd => {
            // One frame after another, as the zstd program reads concatenated frames,
            // skippable frames skipped.
            let mut rest = body;
            loop {
                if let Some(len) = skippable_frame(rest) {
                    rest = rest.get(len..).unwrap_or_default();
                    continue;
                }
                if !rest.starts_with(&ZSTD_MAGIC) {
                    break;
                }
                let before = rest.len();
                let Ok(frame) = ruzstd::decoding::StreamingDecoder::new(&mut rest) else {
                    break;
                };
                read_bounded(frame, &mut out, max, deadline)?;
                if rest.len() == before {
                    break;
                }
            }
        }
    }
    Ok(Some(out))
}

/// Appends what `reader` gives to `out` until it ends or fails, at most `max` bytes in all.
fn read_bounded(
    mut reader: impl Read,
    out: &mut Zeroizing<Vec<u8>>,
    max: usize,
    deadline: Instant,
) -> Result<(), InflateError> {
    let mut chunk = Zeroizing::new(vec![0u8; CHUNK]);
    loop {
        if Instant::now() >= deadline {
            return Err(InflateError::Deadline);
        }
        let n = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => n,
        };
        if out.len() + n > max {
            return Err(InflateError::TooLarge(max));
        }
        // Grown by hand so that no copy is left behind unzeroized when the buffer moves.
        if out.capacity() < out.len() + n {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (out.capacity() * 2).max(out.len() + n).min(max),
            ));
            bigger.extend_from_slice(out);
            *out = bigger;
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    #[test]
    fn gzip_and_zlib_inflate_and_other_bodies_are_left_alone() {
        let data = b"{\"token\": \"abc\"}".repeat(10);
        let got = inflate(&gzip(&data), 1 << 20, later()).expect("inflates");
        assert_eq!(got.as_deref().map(|v| v.as_slice()), Some(data.as_slice()));
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&data).expect("write");
        let got = inflate(&z.finish().expect("finish"), 1 << 20, later()).expect("inflates");
        assert_eq!(got.as_deref().map(|v| v.as_slice()), Some(data.as_slice()));
        for plain in [&b"{\"a\": 1}"[..], b"x^ not zlib", b"", b"\x1f"] {
            assert!(matches!(
                inflate(plain, 1 << 20, later()),
                Ok(None) | Ok(Some(_))
            ));
        }
        assert!(
            inflate(b"{\"a\": 1}", 1 << 20, later())
                .expect("ok")
                .is_none()
        );
        // Truncated: what inflated before the cut.
        let whole = gzip(&vec![b'a'; 100_000]);
        let cut = inflate(&whole[..whole.len() / 2], 1 << 20, later()).expect("ok");
        assert!(cut.is_some_and(|v| v.iter().all(|&b| b == b'a')));
    }

    #[test]
    fn skippable_frames_are_skipped_whatever_length_they_claim() {
        let skip = |len: u32| [[0x50, 0x2a, 0x4d, 0x18], len.to_le_bytes()].concat();
        // A frame claiming more than the body holds ends the body; nothing panics.
        let body = [skip(u32::MAX), b"xy".to_vec()].concat();
        assert_eq!(
            inflate(&body, 1 << 20, later()).expect("ok").as_deref(),
            Some(&Vec::new())
        );
        assert_eq!(skippable_frame(&skip(3)), Some(11));
        assert_eq!(skippable_frame(&[0x60, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]), None);
    }

    #[test]
    fn inflating_is_bounded_by_size_and_deadline() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(matches!(
            inflate(&bomb, 1 << 20, later()),
            Err(InflateError::TooLarge(_))
        ));
        assert!(matches!(
            inflate(&bomb, 100 << 20, Instant::now()),
            Err(InflateError::Deadline)
        ));
    }
}
