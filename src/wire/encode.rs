//! MessagePack encoding byte-identical to the npm `notepack` 0.0.2 encoder.
//!
//! notepack picks the smallest *unsigned* form for integers >= 0 (`cc/cd/ce/cf`), the smallest
//! signed form for negatives, float64 for every non-integer, `a0+n`/`d9`/`da`/`db` for strings and
//! `c4/c5/c6` for binary. There is deliberately no way to write an ext type: old Android readers
//! throw on every one of them.

use rmp::encode::{self, ByteBuf, RmpWrite};

/// Appends MessagePack values to a byte buffer, notepack-style.
///
/// Every header is written by `rmp::encode`, whose choice of form is notepack 0.0.2's for each
/// value class the router writes (checked by the tests below and `tests/wire_vectors.rs`). The
/// buffer is rmp's `ByteBuf`, whose writes cannot fail: its error type is `Infallible`, so no
/// I/O error is built or checked on the way.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: ByteBuf,
}

impl Encoder {
    /// An encoder whose buffer starts with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Encoder {
            buf: ByteBuf::with_capacity(capacity),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf.into_vec()
    }

    /// Writes `nil`.
    pub fn nil(&mut self) -> &mut Self {
        let Ok(()) = encode::write_nil(&mut self.buf);
        self
    }

    /// Writes a boolean.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        let Ok(()) = encode::write_bool(&mut self.buf, value);
        self
    }

    /// Writes a non-negative integer in its smallest unsigned form.
    pub fn uint(&mut self, value: u64) -> &mut Self {
        let Ok(_) = encode::write_uint(&mut self.buf, value);
        self
    }

    /// Writes an integer: unsigned forms when >= 0, the smallest signed form otherwise.
    pub fn int(&mut self, value: i64) -> &mut Self {
        // rmp 0.8.15's `write_sint` picks `00-7f`/`cc`-`cf` for values >= 0, as notepack does.
        let Ok(_) = encode::write_sint(&mut self.buf, value);
        self
    }

    /// Writes a JavaScript number: an integer form when it has no fraction, else float64.
    pub fn number(&mut self, value: f64) -> &mut Self {
        // notepack's own rule (rmp has no notion of a JS number): integral and safe means integer.
        if value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_991.0 {
            // An integral f64 inside the safe range converts exactly.
            return self.int(value as i64);
        }
        let Ok(()) = encode::write_f64(&mut self.buf, value);
        self
    }

    /// Writes a string with the `a0+n` / `d9` / `da` / `db` header notepack uses.
    pub fn str(&mut self, value: &str) -> &mut Self {
        let Ok(()) = encode::write_str(&mut self.buf, value);
        self
    }

    /// Writes binary data (`c4` / `c5` / `c6`).
    pub fn bin(&mut self, value: &[u8]) -> &mut Self {
        let Ok(()) = encode::write_bin(&mut self.buf, value);
        self
    }

    /// Writes one MessagePack value already encoded (a payload echoed as it came).
    pub fn raw(&mut self, value: &[u8]) -> &mut Self {
        let Ok(()) = self.buf.write_bytes(value);
        self
    }

    /// Writes an array header for `len` elements.
    pub fn array(&mut self, len: usize) -> &mut Self {
        let Ok(_) = encode::write_array_len(&mut self.buf, len as u32);
        self
    }

    /// Writes a map header for `len` entries.
    pub fn map(&mut self, len: usize) -> &mut Self {
        let Ok(_) = encode::write_map_len(&mut self.buf, len as u32);
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

    /// The header of each length class at its edges, up to the 32-bit forms the vectors lack.
    #[test]
    fn length_headers_at_every_boundary() {
        // The hex of what `f` writes, without the `payload` bytes after the header.
        fn header(payload: usize, f: impl FnOnce(&mut Encoder)) -> String {
            let mut e = Encoder::default();
            f(&mut e);
            let bytes = e.into_bytes();
            hex(&bytes[..bytes.len() - payload])
        }
        for (len, want) in [
            (31, "bf"),
            (32, "d920"),
            (255, "d9ff"),
            (256, "da0100"),
            (65535, "daffff"),
            (65536, "db00010000"),
        ] {
            let text = "a".repeat(len);
            assert_eq!(header(len, |e| _ = e.str(&text)), want, "str {len}");
        }
        for (len, want) in [
            (0, "c400"),
            (255, "c4ff"),
            (256, "c50100"),
            (65535, "c5ffff"),
            (65536, "c600010000"),
        ] {
            let data = vec![7; len];
            assert_eq!(header(len, |e| _ = e.bin(&data)), want, "bin {len}");
        }
        for (len, array, map) in [
            (0, "90", "80"),
            (15, "9f", "8f"),
            (16, "dc0010", "de0010"),
            (65535, "dcffff", "deffff"),
            (65536, "dd00010000", "df00010000"),
        ] {
            assert_eq!(header(0, |e| _ = e.array(len)), array, "array {len}");
            assert_eq!(header(0, |e| _ = e.map(len)), map, "map {len}");
        }
        assert_eq!(
            encoded(|e| {
                e.uint(u64::MAX).int(i64::MIN).raw(&[0x91, 0x01]);
            }),
            "cfffffffffffffffffd380000000000000009101"
        );
    }
}
