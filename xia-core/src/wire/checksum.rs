//! The internet checksum (RFC 1071), used by XCMP.

/// One's-complement sum of `data` as big-endian 16-bit words (odd length padded with a zero),
/// folded to 16 bits, not complemented.
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add the two 32-bit halves; 64 bits of headroom absorb the carries.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [b] = rest {
        acc += u64::from(*b) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum to store in a header whose checksum field is zero while summing.
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// True when `data`, checksum field included, sums to all ones.
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }

    #[test]
    fn odd_lengths_and_verification() {
        let mut msg = vec![8u8, 0, 0, 0, 0x12, 0x34, 0x00, 0x01, 0xab];
        let c = checksum(&msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&msg));
        msg[8] ^= 1;
        assert!(!verify(&msg));
    }

    #[test]
    fn matches_the_naive_sum() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut naive: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from(c[0]) << 8 };
            naive += u32::from(w);
            naive = (naive & 0xffff) + (naive >> 16);
        }
        assert_eq!(sum(&data), naive as u16);
    }
}
