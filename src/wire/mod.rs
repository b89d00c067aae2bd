//! The wire format: MessagePack frames as VoicePing routers and clients exchange them.
//!
//! Everything here is pure and synchronous: bytes in, values out, and back. Decoding is lenient
//! (any integer width, notepack's `undefined` and Date ext); encoding is byte-identical to the npm
//! `notepack` 0.0.2 encoder and never emits an ext type.

mod decode;
mod encode;
mod frame;
mod messages;
mod talk;

pub use decode::{decode_value, DecodeError, Value};
pub use encode::Encoder;
pub use frame::{ChannelType, Frame, FrameError, Id, MessageType};
pub use messages::{
    encode_activity, encode_connection_ack, encode_error, encode_login_duplicated, encode_snapshot,
    encode_unauthorized_group, encode_update, ErrorCode, OnAir,
};
pub use talk::{
    addressee, encode_forward, encode_talk, from_record, plain_field, sender, to_record, truthy,
    Field,
};
