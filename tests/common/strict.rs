//! A strict MessagePack reader for what the router sends, written apart from `wire` so that it
//! checks the router's encoder instead of agreeing with it.
//!
//! It refuses every ext type (`c7`–`c9`, `d4`–`d8`): old Android readers (msgpack-java) throw on
//! all of them, so one `undefined` or Date in a frame would break every handset. It also refuses
//! what npm `notepack` 0.0.2 never writes: float32, a wider header than a value needs, a positive
//! integer in a signed form, an integral float64, a map key that is not a string.

use serde_json::{json, Map, Value as Json};

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;

/// Decodes one whole value the strict way, as JSON for assertions.
pub fn decode(bytes: &[u8]) -> Result<Json, String> {
    let mut reader = Strict { bytes, pos: 0 };
    let value = reader.value(0)?;
    match bytes.len() - reader.pos {
        0 => Ok(value),
        n => Err(format!("{n} trailing bytes")),
    }
}

/// Decodes `hex` the strict way.
pub fn decode_hex(hex: &str) -> Result<Json, String> {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("?"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|e| format!("not hex: {e}"))?;
    decode(&bytes)
}

struct Strict<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Strict<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let at = self.pos;
        let slice = self
            .bytes
            .get(at..at.saturating_add(n))
            .ok_or_else(|| format!("truncated at byte {at}"))?;
        self.pos += n;
        Ok(slice)
    }

    fn uint(&mut self, width: usize) -> Result<u64, String> {
        Ok(self
            .take(width)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A length in `width` bytes that a smaller header (`below`) could not have held.
    fn len(&mut self, width: usize, below: u64, what: &str) -> Result<usize, String> {
        let at = self.pos - 1;
        let n = self.uint(width)?;
        if n < below {
            return Err(format!(
                "{what} of length {n} with a {width}-byte header at byte {at}: notepack uses a smaller one"
            ));
        }
        usize::try_from(n).map_err(|e| e.to_string())
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deep".into());
        }
        let at = self.pos;
        let marker = self.take(1)?[0];
        let non_canonical =
            |what: &str| Err(format!("{what} at byte {at}: notepack writes it shorter"));
        match marker {
            0x00..=0x7f => Ok(json!(marker)),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth),
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth),
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f)),
            0xc0 => Ok(Json::Null),
            0xc2 => Ok(json!(false)),
            0xc3 => Ok(json!(true)),
            0xc4 => {
                let n = self.len(1, 0, "bin")?;
                self.bin(n)
            }
            0xc5 => {
                let n = self.len(2, 0x100, "bin")?;
                self.bin(n)
            }
            0xc6 => {
                let n = self.len(4, 0x1_0000, "bin")?;
                self.bin(n)
            }
            0xc7..=0xc9 | 0xd4..=0xd8 => Err(format!(
                "ext type (marker 0x{marker:02x}) at byte {at}: Android readers throw on every ext"
            )),
            0xca => Err(format!(
                "float32 at byte {at}: notepack writes only float64"
            )),
            0xcb => {
                let f = f64::from_bits(self.uint(8)?);
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_991.0 {
                    return non_canonical("an integral float64");
                }
                Ok(json!(f))
            }
            0xcc..=0xcf => {
                let width = 1usize << (marker - 0xcc);
                let n = self.uint(width)?;
                let smallest = match n {
                    0..=0x7f => 0,
                    0x80..=0xff => 1,
                    0x100..=0xffff => 2,
                    0x1_0000..=0xffff_ffff => 4,
                    _ => 8,
                };
                if width != smallest {
                    return non_canonical(&format!("{n} in {width} bytes"));
                }
                Ok(json!(n))
            }
            0xd0..=0xd3 => {
                let width = 1usize << (marker - 0xd0);
                let raw = self.uint(width)?;
                let shift = 64 - 8 * width as u32;
                let n = ((raw << shift) as i64) >> shift;
                let smallest = match n {
                    0.. => return non_canonical(&format!("positive {n} in a signed form")),
                    -0x20..=-1 => 0,
                    -0x80..=-0x21 => 1,
                    -0x8000..=-0x81 => 2,
                    -0x8000_0000..=-0x8001 => 4,
                    _ => 8,
                };
                if width != smallest {
                    return non_canonical(&format!("{n} in {width} bytes"));
                }
                Ok(json!(n))
            }
            0xd9 => {
                let n = self.len(1, 0x20, "str")?;
                self.str(n)
            }
            0xda => {
                let n = self.len(2, 0x100, "str")?;
                self.str(n)
            }
            0xdb => {
                let n = self.len(4, 0x1_0000, "str")?;
                self.str(n)
            }
            0xdc => {
                let n = self.len(2, 0x10, "array")?;
                self.array(n, depth)
            }
            0xdd => {
                let n = self.len(4, 0x1_0000, "array")?;
                self.array(n, depth)
            }
            0xde => {
                let n = self.len(2, 0x10, "map")?;
                self.map(n, depth)
            }
            0xdf => {
                let n = self.len(4, 0x1_0000, "map")?;
                self.map(n, depth)
            }
            0xe0..=0xff => Ok(json!(i64::from(marker as i8))),
            0xc1 => Err(format!("invalid marker 0xc1 at byte {at}")),
        }
    }

    fn str(&mut self, n: usize) -> Result<Json, String> {
        let at = self.pos;
        std::str::from_utf8(self.take(n)?)
            .map(|s| json!(s))
            .map_err(|_| format!("string at byte {at} is not UTF-8"))
    }

    fn bin(&mut self, n: usize) -> Result<Json, String> {
        Ok(json!(self.take(n)?))
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Json, String> {
        (0..n)
            .map(|_| self.value(depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array)
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Json, String> {
        let mut map = Map::new();
        for _ in 0..n {
            let at = self.pos;
            let Json::String(key) = self.value(depth + 1)? else {
                return Err(format!("map key at byte {at} is not a string"));
            };
            let value = self.value(depth + 1)?;
            if map.insert(key.clone(), value).is_some() {
                return Err(format!("map key {key:?} twice"));
            }
        }
        Ok(Json::Object(map))
    }
}
