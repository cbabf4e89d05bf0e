//! A 64-byte window of a line as bit masks: which bytes are field separators, which could open a group.
//!
//! [`masks`] is the inner loop of the byte-level path in [`super::leading_spans`]. On x86_64 it
//! compares sixteen bytes per instruction (SSE2, part of every x86_64 CPU); elsewhere eight bytes at
//! a time inside a `u64`. Both are exact, and the tests check them against a plain byte loop.

/// Bytes per window: one bit each in a `u64`.
pub(super) const WINDOW: usize = 64;

/// Bit `i` describes byte `i` of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Masks {
    /// A blank or a tab: the bytes that separate fields.
    pub(super) blanks: u64,
    /// A `"` or a `[`: a field that starts with one follows grouping rules.
    pub(super) groups: u64,
}

/// The masks of `window`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline]
pub(super) fn masks(window: &[u8; WINDOW]) -> Masks {
    // SAFETY: `masks_sse2` only needs SSE2, which the x86_64 baseline guarantees on every CPU this
    // code can run on; the function reads nothing but `window`.
    unsafe { masks_sse2(window) }
}

/// The masks of `window`.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(super) fn masks(window: &[u8; WINDOW]) -> Masks {
    masks_swar(window)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn masks_sse2(window: &[u8; WINDOW]) -> Masks {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
    };
    let [space, tab, quote, bracket] = [b' ', b'\t', b'"', b'['].map(|b| _mm_set1_epi8(b as i8));
    let mut out = Masks {
        blanks: 0,
        groups: 0,
    };
    for (i, lane) in window.chunks_exact(16).enumerate() {
        let (lo, hi) = lane.split_at(8);
        let word = |half: &[u8]| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(half);
            i64::from_le_bytes(bytes)
        };
        // Built from two words read off the slice, so no pointer is involved.
        let v = _mm_set_epi64x(word(hi), word(lo));
        let bits = |a, b| {
            let hit = _mm_or_si128(_mm_cmpeq_epi8(v, a), _mm_cmpeq_epi8(v, b));
            u64::from(_mm_movemask_epi8(hit) as u16) << (16 * i)
        };
        out.blanks |= bits(space, tab);
        out.groups |= bits(quote, bracket);
    }
    out
}

/// [`masks`] without SIMD instructions: eight bytes compared at a time inside a `u64`.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn masks_swar(window: &[u8; WINDOW]) -> Masks {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // High bit of each byte set where that byte of `x` is zero (exact: no false positives).
    let zero_bytes = |x: u64| !(((x & LOW7) + LOW7) | x) & !LOW7;
    let equal = |x: u64, b: u8| zero_bytes(x ^ (ONES * u64::from(b)));
    // Gathers the eight high bits into one byte, byte j to bit j.
    let gather = |hits: u64| ((hits >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
    let mut out = Masks {
        blanks: 0,
        groups: 0,
    };
    for (i, chunk) in window.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        out.blanks |= gather(equal(x, b' ') | equal(x, b'\t')) << (8 * i);
        out.groups |= gather(equal(x, b'"') | equal(x, b'[')) << (8 * i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(window: &[u8; WINDOW]) -> Masks {
        let bits = |f: fn(u8) -> bool| {
            window
                .iter()
                .enumerate()
                .fold(0u64, |m, (i, &b)| m | (u64::from(f(b)) << i))
        };
        Masks {
            blanks: bits(|b| b == b' ' || b == b'\t'),
            groups: bits(|b| b == b'"' || b == b'['),
        }
    }

    #[test]
    fn both_versions_agree_with_a_byte_loop() {
        // The bytes that matter and their neighbours, mixed at random.
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = [
            b' ', b'\t', b'"', b'[', b'!', b'\x08', b'\x0a', b'Z', b'{', 0x80, 0xa0, 0xff,
        ];
        for round in 0..20_000usize {
            let mut window = [0u8; WINDOW];
            for (i, b) in window.iter_mut().enumerate() {
                *b = if round < 256 {
                    // Every byte value at every position.
                    (round + i) as u8
                } else {
                    alphabet[rng.usize(..alphabet.len())]
                };
            }
            let want = plain(&window);
            assert_eq!(masks(&window), want, "{window:?}");
            assert_eq!(masks_swar(&window), want, "{window:?}");
        }
    }
}
