//! CRC-32 (ISO-HDLC / IEEE 802.3, the one zlib uses) for the STUN FINGERPRINT attribute
//! (RFC 8489 §14.7). Table-driven; the 1 KiB table is computed at compile time.

/// The reflected IEEE polynomial.
const POLY: u32 = 0xEDB8_8320;

/// XORed into the CRC to form the FINGERPRINT value: ASCII "STUN" (RFC 8489 §14.7).
pub(crate) const FINGERPRINT_XOR: u32 = 0x5354_554E;

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// CRC-32 of `data` (initial value and final XOR 0xFFFFFFFF).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
    }
    !crc
}

/// The FINGERPRINT value for a message whose bytes before the FINGERPRINT attribute are `data`.
pub(crate) fn fingerprint(data: &[u8]) -> u32 {
    crc32(data) ^ FINGERPRINT_XOR
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
