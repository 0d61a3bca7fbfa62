//! Varint (LEB128) and little-endian fixed-width encoding, shared by the file
//! formats. Decoders return `None` on truncated or overlong input; callers turn
//! that into a corruption error naming the file and offset.

/// Appends `value` as an unsigned LEB128 varint (1 to 10 bytes).
pub fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Decodes a varint from the front of `input`: the value and bytes used.
#[inline]
pub fn get_varint(input: &[u8]) -> Option<(u64, usize)> {
    // Most lengths fit one byte.
    if let Some(&byte) = input.first()
        && byte < 0x80
    {
        return Some((u64::from(byte), 1));
    }
    let mut value = 0u64;
    for (i, &byte) in input.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Appends a little-endian u32.
pub fn put_u32(buf: &mut Vec<u8>, value: u32) {
    buf.extend_from_slice(&value.to_le_bytes());
}

/// Appends a little-endian u64.
pub fn put_u64(buf: &mut Vec<u8>, value: u64) {
    buf.extend_from_slice(&value.to_le_bytes());
}

/// Reads a little-endian u32 at `at`, `None` if out of bounds.
pub fn get_u32(input: &[u8], at: usize) -> Option<u32> {
    let bytes = input.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Reads a little-endian u64 at `at`, `None` if out of bounds.
pub fn get_u64(input: &[u8], at: usize) -> Option<u64> {
    let bytes = input.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The CRC32C of `data`, masked as LevelDB does so that a CRC stored inside
/// checksummed data does not checksum to a fixed value.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edges() {
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            assert_eq!(get_varint(&buf), Some((value, buf.len())));
        }
    }

    #[test]
    fn varint_rejects_truncated_and_overlong() {
        assert_eq!(get_varint(&[0x80]), None);
        assert_eq!(get_varint(&[]), None);
        assert_eq!(get_varint(&[0xff; 11]), None);
    }

    #[test]
    fn fixed_width_out_of_bounds_is_none() {
        let mut buf = Vec::new();
        put_u32(&mut buf, 7);
        assert_eq!(get_u32(&buf, 0), Some(7));
        assert_eq!(get_u32(&buf, 1), None);
        assert_eq!(get_u64(&buf, 0), None);
    }

    #[test]
    fn masked_crc_differs_from_plain() {
        assert_ne!(masked_crc(b"abc"), crc32c::crc32c(b"abc"));
    }
}
