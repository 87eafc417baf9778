//! A forgiving reader over fuzz input: every read succeeds, yielding zeros once the bytes run
//! out, so every input is a valid script and the fuzzer never wastes runs on rejects.

/// Reads little-endian integers and byte strings from the front of a slice.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// True once every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// One byte, 0 past the end.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    /// A little-endian u16, zero-extended past the end.
    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let src = self.bytes(2);
        b[..src.len()].copy_from_slice(src);
        u16::from_le_bytes(b)
    }

    /// A little-endian u32, zero-extended past the end.
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let src = self.bytes(4);
        b[..src.len()].copy_from_slice(src);
        u32::from_le_bytes(b)
    }

    /// A little-endian u64, zero-extended past the end.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let src = self.bytes(8);
        b[..src.len()].copy_from_slice(src);
        u64::from_le_bytes(b)
    }

    /// A name: one of `names` for a byte below 0x80, else (0x80 + n) n characters of
    /// `alphabet`, one per byte (hostile characters for the escaping paths).
    pub fn name(&mut self, names: &[&str], alphabet: &[char]) -> String {
        let mode = self.u8();
        if mode < 0x80 {
            return names[usize::from(mode) % names.len()].to_owned();
        }
        let len = usize::from(mode & 0x7f);
        self.bytes(len)
            .iter()
            .map(|&b| alphabet[usize::from(b) % alphabet.len()])
            .collect()
    }
}
