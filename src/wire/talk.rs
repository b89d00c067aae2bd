//! The push-to-talk frames the router sends, as the VoicePing router writes them, and the
//! MessagePack records routers exchange among themselves (with `rmp-serde`).
//!
//! Every talk frame is `[channelType, messageType, fields...]`: [`encode_talk`] writes it from a
//! list of [`Field`]s, so acks, refusals and forwarded frames share one writer. A forwarded frame
//! keeps the client's bytes (ids as sent, message id and payload raw), but for the sender's id,
//! which is always the authenticated one ([`sender`]).

use super::decode::{decode_value, Value};
use super::encode::Encoder;
use super::frame::{Frame, Id, MessageType};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One element of a talk frame after its channel and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// An id as the client wrote it (integer or string).
    Id(Id<'a>),
    /// A string.
    Str(&'a str),
    /// An unsigned integer.
    Uint(u64),
    /// One MessagePack value, already encoded and free of ext types (see [`plain_field`]).
    Raw(&'a [u8]),
    /// Binary data (a client's ext-typed binary, written plainly).
    Bin(&'a [u8]),
    /// A signed integer (a client's Date, written as its milliseconds).
    Int(i64),
    /// `nil` (an ext value of a type nobody reads).
    Nil,
}

/// A client's encoded value as the router passes it on: as it came, unless it is an ext type
/// (old Android readers throw on every one): then binary (notepack.io's ext 0) as `c4`–`c6`, a
/// Date as its milliseconds, anything else as `nil`. Only the top level is looked at: the
/// payloads forwarded as they came are binary audio and strings.
pub fn plain_field(raw: &[u8]) -> Field<'_> {
    match raw.first() {
        Some(0xc7..=0xc9 | 0xd4..=0xd8) => match decode_value(raw) {
            Ok(Value::Bin(bytes)) => Field::Bin(bytes),
            Ok(Value::Timestamp(ms)) => Field::Int(ms),
            _ => Field::Nil,
        },
        _ => Field::Raw(raw),
    }
}

/// Whether a client's value is truthy as JavaScript reads it: VoicePing keeps a message id, or
/// acknowledges with a payload, only when it is.
pub fn truthy(raw: &[u8]) -> bool {
    match decode_value(raw) {
        Ok(Value::Nil | Value::Undefined | Value::Bool(false) | Value::Int(0) | Value::UInt(0)) => {
            false
        }
        Ok(Value::Str(s)) => !s.is_empty(),
        Ok(Value::Float(f)) => f != 0.0 && !f.is_nan(),
        _ => true,
    }
}

/// `[channel, type, fields...]`.
pub fn encode_talk(channel: u64, message_type: MessageType, fields: &[Field<'_>]) -> Vec<u8> {
    let size: usize = fields
        .iter()
        .map(|f| match f {
            Field::Str(s) => s.len() + 5,
            Field::Raw(r) | Field::Bin(r) => r.len() + 5,
            Field::Id(Id::Str(s)) => s.len() + 5,
            _ => 9,
        })
        .sum();
    let mut e = Encoder::with_capacity(4 + size);
    e.array(2 + fields.len()).uint(channel).uint(message_type.0);
    for field in fields {
        match *field {
            Field::Id(id) => id_field(&mut e, id),
            Field::Str(s) => {
                e.str(s);
            }
            Field::Uint(n) => {
                e.uint(n);
            }
            Field::Raw(raw) => {
                e.raw(raw);
            }
            Field::Bin(bytes) => {
                e.bin(bytes);
            }
            Field::Int(n) => {
                e.int(n);
            }
            Field::Nil => {
                e.nil();
            }
        }
    }
    e.into_bytes()
}

/// Writes an id as it came: an integer stays an integer.
pub(super) fn id_field(e: &mut Encoder, id: Id<'_>) {
    match id {
        Id::Int(n) => e.int(n),
        Id::UInt(n) => e.uint(n),
        Id::Str(s) => e.str(s),
    };
}

/// The sender's id in what the router sends on a frame's behalf: the client's own `fromId` when
/// it names the authenticated user (so the bytes stay as the client wrote them), the
/// authenticated id otherwise. A frame's `fromId` never decides who is speaking.
pub fn sender<'a>(frame: &Frame<'a>, user_id: &'a str) -> Field<'a> {
    match frame.from {
        Some(from) if from.text() == user_id => Field::Id(from),
        _ => Field::Str(user_id),
    }
}

/// The addressee as the client wrote it (`0` when absent, as VoicePing reads a falsy `toId`).
pub fn addressee<'a>(frame: &Frame<'a>) -> Field<'a> {
    frame.to.map_or(Field::Uint(0), Field::Id)
}

/// `frame` forwarded from `user_id`: its channel, type, addressee, message id and payload as they
/// came (but ext types, see [`plain_field`]), the sender's id authenticated. 4 elements without
/// a payload, 6 with a truthy message id (as VoicePing's packer writes them).
pub fn encode_forward(frame: &Frame<'_>, user_id: &str) -> Vec<u8> {
    let mut fields = vec![sender(frame, user_id), addressee(frame)];
    match (frame.message_id.filter(|id| truthy(id)), frame.payload) {
        (Some(id), payload) => {
            fields.push(plain_field(id));
            fields.push(payload.map_or(Field::Nil, plain_field));
        }
        (None, Some(payload)) => fields.push(plain_field(payload)),
        (None, None) => {}
    }
    let channel = match frame.channel {
        super::ChannelType::Group => 0,
        super::ChannelType::Private => 1,
    };
    encode_talk(channel, frame.message_type, &fields)
}

/// A record routers exchange (through Redis), as MessagePack written by `rmp-serde` with
/// field names.
pub fn to_record<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising a plain struct into a Vec cannot fail.
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

/// Reads a record written by [`to_record`]; `None` when it is not one.
pub fn from_record<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    rmp_serde::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn acks_as_notepack_writes_them() {
        let ack = encode_talk(
            0,
            MessageType(6),
            &[
                Field::Str("1"),
                Field::Str("18"),
                Field::Str("1702281234567"),
            ],
        );
        assert_eq!(hex(&ack), "950006a131a23138ad31373032323831323334353637");
        let stop_ack = encode_talk(
            0,
            MessageType(7),
            &[
                Field::Str("1"),
                Field::Str("18"),
                Field::Str("0_3_18_1_1702281234999_432ms.opus"),
                Field::Str("Acknowledged"),
            ],
        );
        assert_eq!(
            hex(&stop_ack),
            "960007a131a23138d921305f335f31385f315f313730323238313233343939395f3433326d732e6f707573ac41636b6e6f776c6564676564"
        );
    }

    #[test]
    fn a_forwarded_start_keeps_its_bytes_but_the_sender() {
        let start = [
            0x95, 0x00, 0x01, 0xa1, b'1', 0xa2, b'1', b'8', 0xcf, 0, 0, 1, 0x8c, 0x57, 0xde, 0x48,
            0x87,
        ];
        let frame = Frame::decode(&start).unwrap();
        assert_eq!(encode_forward(&frame, "1"), start);
        let spoofed = encode_forward(&frame, "2");
        assert_eq!(hex(&spoofed[..5]), "950001a132");
    }

    #[test]
    fn ext_types_are_never_passed_on() {
        // notepack.io 2's binary (ext 0) and a notepack Date, from a browser.
        let audio = [
            0x95, 0x00, 0x03, 0xa1, b'1', 0x12, 0xc7, 0x02, 0x00, 0xaa, 0xbb,
        ];
        let frame = Frame::decode(&audio).unwrap();
        assert_eq!(hex(&encode_forward(&frame, "1")), "950003a13112c402aabb");
        let start = [
            0x95, 0x00, 0x01, 0xa1, b'1', 0x12, 0xd7, 0x00, 0, 0, 1, 0x8c, 0x57, 0xde, 0x48, 0x87,
        ];
        let frame = Frame::decode(&start).unwrap();
        assert_eq!(
            hex(&encode_forward(&frame, "1")),
            "950001a13112cf0000018c57de4887"
        );
    }

    #[test]
    fn falsy_message_ids_are_dropped_as_voiceping_does() {
        let stop = [0x96, 0x00, 0x02, 0xa1, b'1', 0x12, 0xa0, 0xa1, b'x'];
        let frame = Frame::decode(&stop).unwrap();
        assert_eq!(hex(&encode_forward(&frame, "1")), "950002a13112a178");
        assert!(!truthy(&[0x00]) && !truthy(&[0xc2]) && !truthy(&[0xa0]));
        assert!(truthy(&[0x01]) && truthy(&[0xa1, b'0']) && truthy(&[0xc4, 0x00]));
    }

    #[test]
    fn a_four_element_frame_is_forwarded_with_four() {
        let stop = [0x94, 0x00, 0x02, 0x01, 0x12];
        let frame = Frame::decode(&stop).unwrap();
        assert_eq!(
            hex(&encode_forward(&frame, "1")),
            "94000201 12".replace(' ', "")
        );
    }
}
