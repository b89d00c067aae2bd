//! MessagePack encoding byte-identical to the npm `notepack` 0.0.2 encoder.
//!
//! notepack picks the smallest *unsigned* form for integers >= 0 (`cc/cd/ce/cf`), the smallest
//! signed form for negatives, float64 for every non-integer, `a0+n`/`d9`/`da`/`db` for strings and
//! `c4/c5/c6` for binary. There is deliberately no way to write an ext type: old Android readers
//! throw on every one of them.

/// Appends MessagePack values to a byte buffer, notepack-style.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder whose buffer starts with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Encoder {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes `nil`.
    pub fn nil(&mut self) -> &mut Self {
        self.buf.push(0xc0);
        self
    }

    /// Writes a boolean.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.buf.push(if value { 0xc3 } else { 0xc2 });
        self
    }

    /// Writes a non-negative integer in its smallest unsigned form.
    pub fn uint(&mut self, value: u64) -> &mut Self {
        match value {
            0..=0x7f => self.buf.push(value as u8),
            0x80..=0xff => self.buf.extend_from_slice(&[0xcc, value as u8]),
            0x100..=0xffff => {
                self.buf.push(0xcd);
                self.buf.extend_from_slice(&(value as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.buf.push(0xce);
                self.buf.extend_from_slice(&(value as u32).to_be_bytes());
            }
            _ => {
                self.buf.push(0xcf);
                self.buf.extend_from_slice(&value.to_be_bytes());
            }
        }
        self
    }

    /// Writes an integer: unsigned forms when >= 0, the smallest signed form otherwise.
    pub fn int(&mut self, value: i64) -> &mut Self {
        if let Ok(unsigned) = u64::try_from(value) {
            return self.uint(unsigned);
        }
        match value {
            -0x20..=-1 => self.buf.push(value as u8),
            -0x80..=-0x21 => self.buf.extend_from_slice(&[0xd0, value as u8]),
            -0x8000..=-0x81 => {
                self.buf.push(0xd1);
                self.buf.extend_from_slice(&(value as i16).to_be_bytes());
            }
            -0x8000_0000..=-0x8001 => {
                self.buf.push(0xd2);
                self.buf.extend_from_slice(&(value as i32).to_be_bytes());
            }
            _ => {
                self.buf.push(0xd3);
                self.buf.extend_from_slice(&value.to_be_bytes());
            }
        }
        self
    }

    /// Writes a JavaScript number: an integer form when it has no fraction, else float64.
    pub fn number(&mut self, value: f64) -> &mut Self {
        if value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_991.0 {
            // An integral f64 inside the safe range converts exactly.
            return self.int(value as i64);
        }
        self.buf.push(0xcb);
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// Writes a string with the `a0+n` / `d9` / `da` / `db` header notepack uses.
    pub fn str(&mut self, value: &str) -> &mut Self {
        let len = value.len();
        match len {
            0..=0x1f => self.buf.push(0xa0 | len as u8),
            0x20..=0xff => self.buf.extend_from_slice(&[0xd9, len as u8]),
            0x100..=0xffff => {
                self.buf.push(0xda);
                self.buf.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.buf.push(0xdb);
                self.buf.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self.buf.extend_from_slice(value.as_bytes());
        self
    }

    /// Writes binary data (`c4` / `c5` / `c6`).
    pub fn bin(&mut self, value: &[u8]) -> &mut Self {
        let len = value.len();
        match len {
            0..=0xff => self.buf.extend_from_slice(&[0xc4, len as u8]),
            0x100..=0xffff => {
                self.buf.push(0xc5);
                self.buf.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.buf.push(0xc6);
                self.buf.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self.buf.extend_from_slice(value);
        self
    }

    /// Writes one MessagePack value already encoded (a payload echoed as it came).
    pub fn raw(&mut self, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(value);
        self
    }

    /// Writes an array header for `len` elements.
    pub fn array(&mut self, len: usize) -> &mut Self {
        self.container(len, 0x90, 0xdc, 0xdd)
    }

    /// Writes a map header for `len` entries.
    pub fn map(&mut self, len: usize) -> &mut Self {
        self.container(len, 0x80, 0xde, 0xdf)
    }

    fn container(&mut self, len: usize, fix: u8, m16: u8, m32: u8) -> &mut Self {
        match len {
            0..=0x0f => self.buf.push(fix | len as u8),
            0x10..=0xffff => {
                self.buf.push(m16);
                self.buf.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.buf.push(m32);
                self.buf.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn encoded(f: impl FnOnce(&mut Encoder)) -> String {
        let mut e = Encoder::default();
        f(&mut e);
        hex(&e.into_bytes())
    }

    /// Byte vectors printed by `require('notepack').encode(v)` with notepack@0.0.2.
    #[test]
    fn integers_match_notepack() {
        let cases: &[(i64, &str)] = &[
            (0, "00"),
            (127, "7f"),
            (128, "cc80"),
            (255, "ccff"),
            (256, "cd0100"),
            (65535, "cdffff"),
            (65536, "ce00010000"),
            (4294967295, "ceffffffff"),
            (4294967296, "cf0000000100000000"),
            (1702281234567, "cf0000018c57de4887"),
            (-1, "ff"),
            (-32, "e0"),
            (-33, "d0df"),
            (-128, "d080"),
            (-129, "d1ff7f"),
            (-32768, "d18000"),
            (-32769, "d2ffff7fff"),
            (-2147483648, "d280000000"),
            (-2147483649, "d3ffffffff7fffffff"),
        ];
        for &(value, want) in cases {
            assert_eq!(
                encoded(|e| {
                    e.int(value);
                }),
                want,
                "{value}"
            );
        }
    }

    #[test]
    fn non_integers_are_float64_and_integral_floats_are_ints() {
        assert_eq!(
            encoded(|e| {
                e.number(1.5);
            }),
            "cb3ff8000000000000"
        );
        assert_eq!(
            encoded(|e| {
                e.number(-0.25);
            }),
            "cbbfd0000000000000"
        );
        assert_eq!(
            encoded(|e| {
                e.number(3.0);
            }),
            "03"
        );
    }

    #[test]
    fn strings_use_str8_from_32_bytes() {
        assert_eq!(
            encoded(|e| {
                e.str("");
            }),
            "a0"
        );
        assert_eq!(
            encoded(|e| {
                e.str(&"a".repeat(31));
            }),
            format!("bf{}", "61".repeat(31))
        );
        assert_eq!(
            encoded(|e| {
                e.str(&"a".repeat(32));
            }),
            format!("d920{}", "61".repeat(32))
        );
        assert_eq!(
            encoded(|e| {
                e.str(&"a".repeat(256));
            }),
            format!("da0100{}", "61".repeat(256))
        );
        assert_eq!(
            encoded(|e| {
                e.str("é");
            }),
            "a2c3a9"
        );
    }

    #[test]
    fn binary_and_containers() {
        assert_eq!(
            encoded(|e| {
                e.bin(&[1, 2]);
            }),
            "c4020102"
        );
        assert_eq!(
            encoded(|e| {
                e.array(15);
            }),
            "9f"
        );
        assert_eq!(
            encoded(|e| {
                e.array(16);
            }),
            "dc0010"
        );
        assert_eq!(
            encoded(|e| {
                e.map(16);
            }),
            "de0010"
        );
        assert_eq!(
            encoded(|e| {
                e.nil().bool(true).bool(false);
            }),
            "c0c3c2"
        );
    }
}
