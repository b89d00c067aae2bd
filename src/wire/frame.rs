//! The frame envelope `[channelType, messageType, fromId, toId, (messageId,) payload]`.

use super::decode::{DecodeError, Reader, Value};
use thiserror::Error;

/// The channel a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelType {
    /// A talk group (0).
    Group,
    /// A one-to-one channel (1).
    Private,
}

/// A message type number. 0–27 belong to the VoicePing PTT protocol, 30–35 to presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType(pub u64);

impl MessageType {
    /// A talker asks for the floor (group) or starts talking to a peer (private).
    pub const START: MessageType = MessageType(1);
    /// A talker is done.
    pub const STOP: MessageType = MessageType(2);
    /// One frame of a talker's audio.
    pub const AUDIO: MessageType = MessageType(3);
    /// A handset says it connected (accepted silently).
    pub const CONNECTION: MessageType = MessageType(4);
    /// The floor is the talker's (router to talker).
    pub const START_ACK: MessageType = MessageType(6);
    /// A STOP was taken, with the recording id (router to talker).
    pub const STOP_ACK: MessageType = MessageType(7);
    /// No floor: "Busy" or "Ack Failed" (router to talker).
    pub const START_FAILED: MessageType = MessageType(8);
    /// Another device of the user logged in (with `PTT_SINGLE_SESSION`).
    pub const LOGIN_DUPLICATED: MessageType = MessageType(9);
    /// A text message.
    pub const TEXT: MessageType = MessageType(17);
    /// An image (not forwarded, as by VoicePing).
    pub const IMAGE: MessageType = MessageType(18);
    /// A message was delivered (private: forwarded).
    pub const DELIVERED: MessageType = MessageType(20);
    /// A message was read (private: forwarded).
    pub const READ: MessageType = MessageType(21);
    /// A TEXT was taken (router to sender).
    pub const TEXT_ACK: MessageType = MessageType(22);
    /// An interactive message (as TEXT).
    pub const INTERACTIVE: MessageType = MessageType(23);
    /// An INTERACTIVE was taken (router to sender).
    pub const INTERACTIVE_ACK: MessageType = MessageType(24);
    /// The sender joins the group named by `toId` (VoicePing's USER_ADD).
    pub const USER_ADD: MessageType = MessageType(15);
    /// The sender leaves the group named by `toId` (VoicePing's USER_REMOVE).
    pub const USER_REMOVE: MessageType = MessageType(16);
    /// A client asks whether its connection works.
    pub const CONNECTION_TEST: MessageType = MessageType(25);
    /// The answer to a CONNECTION_TEST, its payload echoed.
    pub const CONNECTION_ACK: MessageType = MessageType(26);
    /// The sender may not use that group, sent to the sender.
    pub const UNAUTHORIZED_GROUP: MessageType = MessageType(27);
    /// A handset's keep-alive: refreshes its user's presence TTL.
    pub const HEARTBEAT: MessageType = MessageType(30);
    /// A change of one user's status, sent to dashboards.
    pub const PRESENCE_UPDATE: MessageType = MessageType(31);
    /// Who is online, sent to a dashboard when it connects.
    pub const PRESENCE_SNAPSHOT: MessageType = MessageType(32);
    /// A frame the router refused, sent to its sender.
    pub const PRESENCE_ERROR: MessageType = MessageType(33);
    /// A user states their availability and status text (client to router).
    pub const SET_AVAILABILITY: MessageType = MessageType(34);
    /// A user went on or off the air, sent to dashboards.
    pub const PRESENCE_ACTIVITY: MessageType = MessageType(35);
}

/// A user or group id as it appears on the wire: an integer or a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id<'a> {
    /// An integer id.
    Int(i64),
    /// An integer id above `i64::MAX`.
    UInt(u64),
    /// A string id.
    Str(&'a str),
}

impl Id<'_> {
    /// The id as text: integers in decimal, as the router compares ids.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Id::Int(n) => n.to_string().into(),
            Id::UInt(n) => n.to_string().into(),
            Id::Str(s) => (*s).into(),
        }
    }
}

/// One decoded frame. Ids and payload borrow from the message bytes; the payload is kept as
/// checked raw MessagePack and decoded only when someone needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<'a> {
    /// GROUP or PRIVATE.
    pub channel: ChannelType,
    /// What the frame is.
    pub message_type: MessageType,
    /// The sender id the client wrote (never trusted for presence).
    pub from: Option<Id<'a>>,
    /// The addressee id.
    pub to: Option<Id<'a>>,
    /// The message id of the 6-element form.
    pub message_id: Option<&'a [u8]>,
    /// The payload's raw MessagePack bytes, when present and not `nil`/`undefined`.
    pub payload: Option<&'a [u8]>,
}

/// Why a binary message is not a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Not MessagePack.
    #[error("undecodable MessagePack: {0}")]
    Decode(#[from] DecodeError),
    /// MessagePack, but not an array.
    #[error("a frame must be a MessagePack array")]
    NotAnArray,
    /// An array of the wrong size.
    #[error("a frame has 3 to 6 elements, this one has {0}")]
    BadLength(usize),
    /// A channelType other than 0 (GROUP) or 1 (PRIVATE).
    #[error("unknown channelType {0}")]
    UnknownChannel(String),
    /// A messageType that is not a non-negative integer.
    #[error("messageType must be a non-negative integer")]
    BadMessageType,
    /// An id that is neither an integer nor a string.
    #[error("{0} must be an integer or a string")]
    BadId(&'static str),
}

impl<'a> Frame<'a> {
    /// Decodes one frame, accepting every form VoicePing clients send.
    pub fn decode(bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        let mut reader = Reader::new(bytes);
        let len = reader.array_len()?.ok_or(FrameError::NotAnArray)?;
        if !(3..=6).contains(&len) {
            return Err(FrameError::BadLength(len));
        }
        let channel = match reader.value(0)? {
            Value::Int(0) => ChannelType::Group,
            Value::Int(1) => ChannelType::Private,
            other => return Err(FrameError::UnknownChannel(describe(&other))),
        };
        let message_type = reader
            .value(0)?
            .as_u64()
            .map(MessageType)
            .ok_or(FrameError::BadMessageType)?;
        let from = id(reader.value(0)?, "fromId")?;
        let to = match len {
            3 => None,
            _ => id(reader.value(0)?, "toId")?,
        };
        let message_id = match len {
            6 => present(reader.skip(0)?),
            _ => None,
        };
        let payload = match len {
            5 | 6 => present(reader.skip(0)?),
            _ => None,
        };
        reader.finish()?;
        Ok(Frame {
            channel,
            message_type,
            from,
            to,
            message_id,
            payload,
        })
    }

    /// Decodes the payload into a value tree (`None` when absent).
    pub fn payload_value(&self) -> Option<Value<'a>> {
        // The payload bytes were checked when the frame was decoded.
        self.payload.and_then(|raw| super::decode_value(raw).ok())
    }
}

/// `nil` and notepack's `undefined` both mean "absent".
fn present(raw: &[u8]) -> Option<&[u8]> {
    match raw {
        [0xc0] | [0xd4, 0x00, _] => None,
        _ => Some(raw),
    }
}

fn id<'a>(value: Value<'a>, field: &'static str) -> Result<Option<Id<'a>>, FrameError> {
    match value {
        Value::Int(i) => Ok(Some(Id::Int(i))),
        Value::UInt(u) => Ok(Some(Id::UInt(u))),
        Value::Str(s) => Ok(Some(Id::Str(s))),
        Value::Nil | Value::Undefined => Ok(None),
        _ => Err(FrameError::BadId(field)),
    }
}

/// A refused value as an error message quotes it: at most [`QUOTED_CHARS`] characters of it
/// (a 64 KB string must not come back 64 KB long).
fn describe(value: &Value<'_>) -> String {
    let text = match value {
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Str(s) => {
            let cut = s
                .char_indices()
                .nth(QUOTED_CHARS)
                .map_or(s.len(), |(at, _)| at);
            format!("{:?}", &s[..cut])
        }
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::Map(entries) => format!("a map of {}", entries.len()),
        Value::Bin(bytes) => format!("binary of {} bytes", bytes.len()),
        Value::Ext(kind, bytes) => format!("ext type {kind} of {} bytes", bytes.len()),
        other => format!("{other:?}"),
    };
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The most characters of a refused value an error message quotes.
pub const QUOTED_CHARS: usize = 32;
