//! Lenient MessagePack decoding without copies.
//!
//! [`Reader`] walks a byte slice; [`Value`] borrows strings and binaries from it. Nesting is
//! limited to [`MAX_DEPTH`] so that no input can exhaust the stack.

use thiserror::Error;

/// Deepest nesting of arrays and maps accepted in one value.
pub const MAX_DEPTH: usize = 32;

/// Why bytes could not be decoded as MessagePack.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("truncated MessagePack value")]
    Truncated,
    /// A marker byte that MessagePack does not define (`0xc1`).
    #[error("invalid MessagePack marker 0x{0:02x}")]
    InvalidMarker(u8),
    /// A string whose bytes are not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// Arrays or maps nested deeper than [`MAX_DEPTH`].
    #[error("value nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Bytes left over after the value.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

/// A decoded MessagePack value borrowing from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `nil`.
    Nil,
    /// notepack's `undefined` (`d4 00 00`): treated as absent.
    Undefined,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer of any width.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A float32 or float64.
    Float(f64),
    /// A UTF-8 string.
    Str(&'a str),
    /// Binary data (`c4`–`c6`, or notepack.io 2's ext type 0 in `c7`–`c9`).
    Bin(&'a [u8]),
    /// A point in time in milliseconds since the epoch (notepack Date or the standard timestamp).
    Timestamp(i64),
    /// An ext value of another type, kept opaque.
    Ext(i8, &'a [u8]),
    /// An array.
    Array(Vec<Value<'a>>),
    /// A map, in wire order.
    Map(Vec<(Value<'a>, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The integer this value holds, if it is one that fits in `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(i) => u64::try_from(i).ok(),
            Value::UInt(u) => Some(u),
            _ => None,
        }
    }

    /// The string this value holds, if any.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks a string key up in a map value.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Decodes exactly one value from `bytes`, refusing trailing bytes.
pub fn decode_value(bytes: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let value = reader.value(0)?;
    reader.finish()?;
    Ok(value)
}

/// A cursor over MessagePack bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// What a marker announces: a scalar already read, or a container / payload still to read.
enum Head<'a> {
    Scalar(Value<'a>),
    Array(usize),
    Map(usize),
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len8(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(self.byte()?))
    }

    fn len16(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }

    fn len32(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(u32::from_be_bytes(self.be()?)).map_err(|_| DecodeError::Truncated)
    }

    fn str(&mut self, len: usize) -> Result<Value<'a>, DecodeError> {
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(Value::Str)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    fn ext(&mut self, form: ExtForm, len: usize) -> Result<Value<'a>, DecodeError> {
        let kind = i8::from_be_bytes(self.be()?);
        let data = self.take(len)?;
        Ok(ext_value(form, kind, data))
    }

    /// Reads one marker and whatever fixed-size data follows it.
    fn head(&mut self) -> Result<Head<'a>, DecodeError> {
        let marker = self.byte()?;
        let scalar = match marker {
            0x00..=0x7f => Value::Int(i64::from(marker)),
            0x80..=0x8f => return Ok(Head::Map(usize::from(marker & 0x0f))),
            0x90..=0x9f => return Ok(Head::Array(usize::from(marker & 0x0f))),
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xc0 => Value::Nil,
            0xc1 => return Err(DecodeError::InvalidMarker(marker)),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.len8()?;
                Value::Bin(self.take(n)?)
            }
            0xc5 => {
                let n = self.len16()?;
                Value::Bin(self.take(n)?)
            }
            0xc6 => {
                let n = self.len32()?;
                Value::Bin(self.take(n)?)
            }
            0xc7 => {
                let n = self.len8()?;
                self.ext(ExtForm::Sized, n)?
            }
            0xc8 => {
                let n = self.len16()?;
                self.ext(ExtForm::Sized, n)?
            }
            0xc9 => {
                let n = self.len32()?;
                self.ext(ExtForm::Sized, n)?
            }
            0xca => Value::Float(f64::from(f32::from_be_bytes(self.be()?))),
            0xcb => Value::Float(f64::from_be_bytes(self.be()?)),
            0xcc => Value::Int(i64::from(u8::from_be_bytes(self.be()?))),
            0xcd => Value::Int(i64::from(u16::from_be_bytes(self.be()?))),
            0xce => Value::Int(i64::from(u32::from_be_bytes(self.be()?))),
            0xcf => {
                let u = u64::from_be_bytes(self.be()?);
                i64::try_from(u).map_or(Value::UInt(u), Value::Int)
            }
            0xd0 => Value::Int(i64::from(i8::from_be_bytes(self.be()?))),
            0xd1 => Value::Int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Value::Int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Value::Int(i64::from_be_bytes(self.be()?)),
            0xd4 => self.ext(ExtForm::Fixed, 1)?,
            0xd5 => self.ext(ExtForm::Fixed, 2)?,
            0xd6 => self.ext(ExtForm::Fixed, 4)?,
            0xd7 => self.ext(ExtForm::Fixed, 8)?,
            0xd8 => self.ext(ExtForm::Fixed, 16)?,
            0xd9 => {
                let n = self.len8()?;
                self.str(n)?
            }
            0xda => {
                let n = self.len16()?;
                self.str(n)?
            }
            0xdb => {
                let n = self.len32()?;
                self.str(n)?
            }
            0xdc => return Ok(Head::Array(self.len16()?)),
            0xdd => return Ok(Head::Array(self.len32()?)),
            0xde => return Ok(Head::Map(self.len16()?)),
            0xdf => return Ok(Head::Map(self.len32()?)),
            0xe0..=0xff => Value::Int(i64::from(i8::from_be_bytes([marker]))),
        };
        Ok(Head::Scalar(scalar))
    }

    /// Reads the header of an array, returning its length, or `None` when the next value is not
    /// an array (the reader is then left where it was).
    pub(crate) fn array_len(&mut self) -> Result<Option<usize>, DecodeError> {
        let start = self.pos;
        match self.head()? {
            Head::Array(n) => Ok(Some(n)),
            _ => {
                self.pos = start;
                Ok(None)
            }
        }
    }

    /// Decodes one whole value.
    pub(crate) fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        match self.head()? {
            Head::Scalar(v) => Ok(v),
            Head::Array(n) => {
                let depth = deeper(depth)?;
                // Every element takes at least one byte: cap the reservation by what is left.
                let mut items = Vec::with_capacity(n.min(self.remaining()));
                for _ in 0..n {
                    items.push(self.value(depth)?);
                }
                Ok(Value::Array(items))
            }
            Head::Map(n) => {
                let depth = deeper(depth)?;
                let mut entries = Vec::with_capacity(n.min(self.remaining() / 2));
                for _ in 0..n {
                    let key = self.value(depth)?;
                    let value = self.value(depth)?;
                    entries.push((key, value));
                }
                Ok(Value::Map(entries))
            }
        }
    }

    /// Checks one whole value and returns the bytes it spans, building nothing.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        match self.head()? {
            Head::Scalar(_) => {}
            Head::Array(n) => {
                let depth = deeper(depth)?;
                for _ in 0..n {
                    self.skip(depth)?;
                }
            }
            Head::Map(n) => {
                let depth = deeper(depth)?;
                for _ in 0..n.saturating_mul(2) {
                    self.skip(depth)?;
                }
            }
        }
        Ok(&self.bytes[start..self.pos])
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

fn deeper(depth: usize) -> Result<usize, DecodeError> {
    if depth >= MAX_DEPTH {
        Err(DecodeError::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

/// Whether an ext value came in a fixext marker (`d4`–`d8`) or a sized one (`c7`–`c9`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExtForm {
    Fixed,
    Sized,
}

/// Interprets an ext value as the npm packages do, by marker: type 0 is notepack's `undefined`
/// in `d4`, its Date in `d7` and notepack.io 2's binary in `c7`–`c9`; type -1 is the standard
/// timestamp.
fn ext_value(form: ExtForm, kind: i8, data: &[u8]) -> Value<'_> {
    match (kind, form, data.len()) {
        (0, ExtForm::Fixed, 1) => Value::Undefined,
        (0, ExtForm::Fixed, 8) => Value::Timestamp(i64::from_be_bytes(to_array(data))),
        (0, ExtForm::Sized, _) => Value::Bin(data),
        (-1, _, 4) => Value::Timestamp(i64::from(u32::from_be_bytes(to_array(data))) * 1000),
        (-1, _, 8) => {
            let raw = u64::from_be_bytes(to_array(data));
            let nanos = i64::try_from(raw >> 34).unwrap_or(0);
            let secs = i64::try_from(raw & 0x3_ffff_ffff).unwrap_or(0);
            Value::Timestamp(secs * 1000 + nanos / 1_000_000)
        }
        (-1, _, 12) => {
            let nanos = i64::from(u32::from_be_bytes(to_array(&data[..4])));
            let secs = i64::from_be_bytes(to_array(&data[4..]));
            Value::Timestamp(secs.saturating_mul(1000).saturating_add(nanos / 1_000_000))
        }
        _ => Value::Ext(kind, data),
    }
}

fn to_array<const N: usize>(data: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&data[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn integers_of_every_width_decode_to_the_same_number() {
        for bytes in [
            "07",
            "cc07",
            "cd0007",
            "ce00000007",
            "cf0000000000000007",
            "d007",
            "d10007",
            "d200000007",
            "d30000000000000007",
        ] {
            assert_eq!(decode_value(&hex(bytes)), Ok(Value::Int(7)), "{bytes}");
        }
        assert_eq!(decode_value(&hex("ff")), Ok(Value::Int(-1)));
        assert_eq!(decode_value(&hex("d3ffffffffffffffff")), Ok(Value::Int(-1)));
        assert_eq!(
            decode_value(&hex("cfffffffffffffffff")),
            Ok(Value::UInt(u64::MAX))
        );
    }

    #[test]
    fn notepack_ext_forms_are_understood() {
        assert_eq!(decode_value(&hex("d40000")), Ok(Value::Undefined));
        assert_eq!(
            decode_value(&hex("d7000000018c57de4887")),
            Ok(Value::Timestamp(1_702_281_234_567))
        );
        assert_eq!(
            decode_value(&hex("c70300010203")),
            Ok(Value::Bin(&[1, 2, 3]))
        );
        assert_eq!(
            decode_value(&hex("d6ff00000001")),
            Ok(Value::Timestamp(1000))
        );
        assert_eq!(decode_value(&hex("d40501")), Ok(Value::Ext(5, &[1])));
    }

    /// notepack.io 2 writes an ArrayBuffer as ext type 0 in `c7`: one of 1 or 8 bytes is still
    /// binary, not `undefined` or a Date (those are only `d4 00` and `d7 00`).
    #[test]
    fn ext_type_0_is_read_by_its_marker() {
        assert_eq!(decode_value(&hex("c7010000")), Ok(Value::Bin(&[0])));
        assert_eq!(
            decode_value(&hex("c708000000000000000001")),
            Ok(Value::Bin(&[0, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert_eq!(decode_value(&hex("d40007")), Ok(Value::Undefined));
        assert_eq!(decode_value(&hex("d6000102")), Err(DecodeError::Truncated));
        assert_eq!(
            decode_value(&hex("d60001020304")),
            Ok(Value::Ext(0, &[1, 2, 3, 4]))
        );
    }

    #[test]
    fn float32_and_float64_are_accepted() {
        assert_eq!(decode_value(&hex("ca3fc00000")), Ok(Value::Float(1.5)));
        assert_eq!(
            decode_value(&hex("cb3ff8000000000000")),
            Ok(Value::Float(1.5))
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(
            decode_value(&hex("c1")),
            Err(DecodeError::InvalidMarker(0xc1))
        );
        assert_eq!(
            decode_value(&hex("ddffffffff")),
            Err(DecodeError::Truncated)
        );
        assert_eq!(decode_value(&hex("a2ff")), Err(DecodeError::Truncated));
        assert_eq!(decode_value(&hex("a2fffe")), Err(DecodeError::InvalidUtf8));
        assert_eq!(
            decode_value(&hex("0101")),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(decode_value(&[]), Err(DecodeError::Truncated));
        let deep = vec![0x91u8; MAX_DEPTH + 1];
        assert_eq!(decode_value(&deep), Err(DecodeError::TooDeep));
    }

    #[test]
    fn skip_spans_exactly_one_value() {
        let bytes = hex("82a474797065a9686561727462656174a974696d657374616d70cf0000018c57de488701");
        let mut reader = Reader::new(&bytes);
        let span = reader.skip(0).expect("valid map");
        assert_eq!(span.len(), bytes.len() - 1);
        assert_eq!(reader.value(0), Ok(Value::Int(1)));
    }
}
