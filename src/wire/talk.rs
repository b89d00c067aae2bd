//! The push-to-talk frames the router sends, as the VoicePing router writes them, and the
//! MessagePack records routers exchange among themselves (with `rmp-serde`).
//!
//! Every talk frame is `[channelType, messageType, fields...]`: [`encode_talk`] writes it from a
//! list of [`Field`]s, so acks, refusals and forwarded frames share one writer. A forwarded frame
//! keeps the client's bytes (ids as sent, message id and payload raw), but for the sender's id,
//! which is always the authenticated one ([`sender`]).

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
    /// One MessagePack value, already encoded (a client's payload or message id).
    Raw(&'a [u8]),
}

/// `[channel, type, fields...]`.
pub fn encode_talk(channel: u64, message_type: MessageType, fields: &[Field<'_>]) -> Vec<u8> {
    let size: usize = fields
        .iter()
        .map(|f| match f {
            Field::Str(s) => s.len() + 5,
            Field::Raw(r) => r.len(),
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
/// came, the sender's id authenticated. 4 elements without a payload, 6 with a message id.
pub fn encode_forward(frame: &Frame<'_>, user_id: &str) -> Vec<u8> {
    let mut fields = vec![sender(frame, user_id), addressee(frame)];
    match (frame.message_id, frame.payload) {
        (Some(id), payload) => {
            fields.push(Field::Raw(id));
            fields.push(Field::Raw(payload.unwrap_or(&[0xc0])));
        }
        (None, Some(payload)) => fields.push(Field::Raw(payload)),
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
    fn a_four_element_frame_is_forwarded_with_four() {
        let stop = [0x94, 0x00, 0x02, 0x01, 0x12];
        let frame = Frame::decode(&stop).unwrap();
        assert_eq!(
            hex(&encode_forward(&frame, "1")),
            "94000201 12".replace(' ', "")
        );
    }
}
