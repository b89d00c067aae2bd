//! One session's push-to-talk: START / AUDIO / STOP, TEXT / INTERACTIVE, DELIVERED / READ, as
//! the VoicePing router answers them. The floor rules are [`crate::ptt`]'s and the floors are the
//! store's; this module applies them to one connection's frames, replies to the sender's own
//! connection first, and hands what others get to the [`Hub`] (this router) and the store's
//! relay (the others). The sender's id in everything sent is the authenticated one.

use super::hub::{Delivery, Hub};
use super::session::{report, Peer};
use super::Context;
use crate::metrics::inc;
use crate::presence::{Audience, Millis};
use crate::ptt::{floor_key, recording_id, text_id, Audio, Channel, Claim, Floor, Talk};
use crate::store::{Activity, PresenceStore, Relayed};
use crate::visibility::scoped;
use crate::wire::{
    addressee, encode_forward, encode_talk, encode_unauthorized_group, sender, ChannelType,
    ErrorCode, Field, Frame, MessageType, Value,
};
use bytes::Bytes;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A frame refused with a PRESENCE_ERROR: its code and message.
pub type Refusal = (ErrorCode, String);

/// How often at most a talker is told that its AUDIO has no floor (it is not a bad frame: the
/// floor may have freed itself a moment ago).
const NO_FLOOR_NOTICE: Duration = Duration::from_secs(1);

/// The push-to-talk state of one session.
#[derive(Debug, Default)]
pub struct TalkState {
    /// The floor this connection holds, while its user talks.
    holding: Option<Held>,
    /// When the talker was last told its AUDIO had no floor.
    no_floor_told: Option<Instant>,
}

#[derive(Debug)]
struct Held {
    key: String,
    talk: Talk,
}

impl Held {
    /// Whether this is the hold of `target`'s floor (for this session's talker).
    fn is_for(&self, target: &Target<'_>) -> bool {
        self.talk.floor.channel == target.channel && self.talk.floor.to == target.scoped
    }
}

impl TalkState {
    /// When the floor held frees itself unless audio comes (to tell dashboards it did).
    pub fn free_at(&self) -> Option<Millis> {
        self.holding.as_ref().map(|held| held.talk.floor.until)
    }
}

/// What a handler sends to its own connection, in order.
pub type Replies = Vec<Bytes>;

/// Whether `message_type` is push-to-talk handled here.
pub fn is_talk(message_type: MessageType) -> bool {
    matches!(
        message_type,
        MessageType::START
            | MessageType::AUDIO
            | MessageType::STOP
            | MessageType::CONNECTION
            | MessageType::TEXT
            | MessageType::INTERACTIVE
            | MessageType::IMAGE
            | MessageType::DELIVERED
            | MessageType::READ
    )
}

/// Everything a handler needs of its session.
pub struct Talker<'a, S> {
    /// The router's shared state.
    pub ctx: &'a Context<S>,
    /// Who is talking.
    pub peer: &'a Peer,
    /// Their tenant-scoped user id.
    pub user: &'a Arc<str>,
}

/// Where a frame goes: a group, or a user, tenant-scoped, and its id as the client wrote it.
struct Target<'f> {
    channel: Channel,
    scoped: Arc<str>,
    text: std::borrow::Cow<'f, str>,
}

impl Target<'_> {
    /// The store's key of the floor `talker` takes here: the group's, or the talker's own
    /// private talk.
    fn key(&self, talker: &str) -> String {
        match self.channel {
            Channel::Group => floor_key(Channel::Group, &self.scoped),
            Channel::Private => floor_key(Channel::Private, talker),
        }
    }
}

impl<S: PresenceStore> Talker<'_, S> {
    fn now(&self) -> Millis {
        self.ctx.clock.now_ms()
    }

    fn user_id(&self) -> &str {
        &self.peer.identity.user_id
    }

    /// Handles one push-to-talk frame; returns what the sender's connection gets, or why the
    /// frame is refused.
    pub async fn handle(
        &self,
        state: &mut TalkState,
        frame: &Frame<'_>,
    ) -> Result<Replies, Refusal> {
        match frame.message_type {
            MessageType::CONNECTION => Ok(Vec::new()),
            MessageType::IMAGE => {
                inc(&self.ctx.metrics.frames_dropped);
                Ok(Vec::new())
            }
            MessageType::START => self.start(state, frame).await,
            MessageType::AUDIO => self.audio(state, frame).await,
            MessageType::STOP => self.stop(state, frame).await,
            MessageType::TEXT | MessageType::INTERACTIVE => self.text(frame),
            // DELIVERED and READ: forwarded in private, ignored in groups.
            _ => {
                let target = self.target(frame)?;
                if target.channel == Channel::Private {
                    self.forward(&target, Bytes::from(encode_forward(frame, self.user_id())));
                }
                Ok(Vec::new())
            }
        }
    }

    fn target<'f>(&self, frame: &Frame<'f>) -> Result<Target<'f>, Refusal> {
        let channel = match frame.channel {
            ChannelType::Group => Channel::Group,
            ChannelType::Private => Channel::Private,
        };
        let what = match channel {
            Channel::Group => "its group",
            Channel::Private => "its recipient",
        };
        let Some(to) = frame.to else {
            return Err((
                ErrorCode::BadFrame,
                format!("the frame names {what} in toId"),
            ));
        };
        let text = to.text();
        if !crate::auth::valid_group_id(&text) || text == "0" {
            return Err((
                ErrorCode::BadFrame,
                format!("toId names {what}: 1 to 128 bytes, no control characters, not 0"),
            ));
        }
        Ok(Target {
            channel,
            scoped: scoped(self.peer.identity.tenant.as_deref(), &text),
            text: match to {
                crate::wire::Id::Str(s) => s.into(),
                _ => text.into_owned().into(),
            },
        })
    }

    /// Whether the talker may talk in a group target; the two refusals VoicePing sends when not.
    fn member(&self, target: &Target<'_>, frame: &Frame<'_>) -> Option<Replies> {
        if target.channel == Channel::Private || self.ctx.hub.is_member(self.user, &target.scoped) {
            return None;
        }
        let to = frame.to.unwrap_or(crate::wire::Id::Int(0));
        Some(vec![Bytes::from(encode_unauthorized_group(
            self.user_id(),
            to,
        ))])
    }

    /// Hands `frame` to the target's connections on every router.
    fn forward(&self, target: &Target<'_>, frame: Bytes) {
        let hub: &Hub = &self.ctx.hub;
        let (delivery, relayed) = match target.channel {
            Channel::Group => (
                hub.to_group(&target.scoped, self.user, &frame),
                Relayed::Group {
                    group: target.scoped.clone(),
                    except: self.user.clone(),
                    frame,
                },
            ),
            Channel::Private => (
                hub.to_user(&target.scoped, &frame),
                Relayed::User {
                    user: target.scoped.clone(),
                    frame,
                },
            ),
        };
        count(self.ctx, delivery);
        self.ctx.store.relay(relayed);
    }

    async fn start(&self, state: &mut TalkState, frame: &Frame<'_>) -> Result<Replies, Refusal> {
        let target = self.target(frame)?;
        let from = sender(frame, self.user_id());
        let to = addressee(frame);
        if target.channel == Channel::Private {
            // No floor in private: acknowledged with the payload as it came, and forwarded.
            let mut fields = vec![from, to];
            fields.extend(frame.message_id.map(Field::Raw));
            fields.push(frame.payload.map_or(Field::Str("Acknowledged"), Field::Raw));
            self.forward(&target, Bytes::from(encode_forward(frame, self.user_id())));
            return Ok(vec![Bytes::from(encode_talk(
                1,
                MessageType::START_ACK,
                &fields,
            ))]);
        }
        let ack = start_ack_text(frame)?;
        let failed = |why| {
            Bytes::from(encode_talk(
                0,
                MessageType::START_FAILED,
                &[from, to, Field::Str(why)],
            ))
        };
        if let Some(mut refused) = self.member(&target, frame) {
            refused.push(failed("Ack Failed"));
            return Ok(refused);
        }
        let now = self.now();
        let key = target.key(self.user);
        let want = self.floor(&target, now);
        match self.ctx.store.claim(&key, &want, now).await {
            Ok(Claim::Granted) => {}
            Ok(Claim::Busy) => {
                inc(&self.ctx.metrics.floors_busy);
                return Ok(vec![failed("Busy")]);
            }
            Err(error) => {
                report(self.ctx, Err(error));
                return Ok(vec![failed("Ack Failed")]);
            }
        }
        if state.holding.as_ref().is_some_and(|held| held.key != key) {
            self.end(state, now).await;
        }
        self.announce(&want, true, now);
        state.holding = Some(Held {
            key,
            talk: Talk::new(want),
        });
        let reply = Bytes::from(encode_talk(
            0,
            MessageType::START_ACK,
            &[from, to, Field::Str(&ack)],
        ));
        self.forward(&target, Bytes::from(encode_forward(frame, self.user_id())));
        Ok(vec![reply])
    }

    /// A new hold of the target's floor by this talker, from `now`.
    fn floor(&self, target: &Target<'_>, now: Millis) -> Floor {
        Floor::new(
            getrandom::u64().unwrap_or(now ^ self.peer.conn_id.rotate_left(32)),
            self.user.clone(),
            target.channel,
            target.scoped.clone(),
            now,
            &self.ctx.config.ptt_timers,
        )
    }

    async fn audio(&self, state: &mut TalkState, frame: &Frame<'_>) -> Result<Replies, Refusal> {
        let target = self.target(frame)?;
        let now = self.now();
        let timers = self.ctx.config.ptt_timers;
        let step = match state.holding.as_mut() {
            Some(held) if held.is_for(&target) => held.talk.audio(now, &timers),
            _ => Audio::Lost,
        };
        match step {
            Audio::Forward(refreshed) => {
                if let Some(floor) = refreshed {
                    let key = target.key(self.user);
                    if !self.ctx.store.refresh(&key, &floor).await.unwrap_or(true) {
                        self.end(state, now).await;
                        return Ok(self.no_floor(state, &target));
                    }
                }
            }
            Audio::TooLong => return self.stop(state, frame).await,
            Audio::Lost if target.channel == Channel::Private => {
                // A private talk is on the air from its first audio; never busy.
                if state.holding.is_some() {
                    self.end(state, now).await;
                }
                let want = self.floor(&target, now);
                let key = target.key(self.user);
                if let Err(error) = self.ctx.store.claim(&key, &want, now).await {
                    report(self.ctx, Err(error));
                }
                self.announce(&want, true, now);
                state.holding = Some(Held {
                    key,
                    talk: Talk::new(want),
                });
            }
            Audio::Lost => {
                if state
                    .holding
                    .as_ref()
                    .is_some_and(|held| held.is_for(&target))
                {
                    self.end(state, now).await;
                }
                return Ok(self.no_floor(state, &target));
            }
        }
        self.forward(&target, Bytes::from(encode_forward(frame, self.user_id())));
        Ok(Vec::new())
    }

    /// AUDIO in a group whose floor the sender does not hold: dropped, and the sender told
    /// (at most every [`NO_FLOOR_NOTICE`]).
    fn no_floor(&self, state: &mut TalkState, target: &Target<'_>) -> Replies {
        inc(&self.ctx.metrics.audio_without_floor);
        let now = Instant::now();
        if state
            .no_floor_told
            .is_some_and(|told| now.duration_since(told) < NO_FLOOR_NOTICE)
        {
            return Vec::new();
        }
        state.no_floor_told = Some(now);
        let message = format!(
            "AUDIO to group {} without its floor: send START first (and AUDIO within {} ms)",
            target.text, self.ctx.config.ptt_timers.idle
        );
        vec![Bytes::from(crate::wire::encode_error(
            self.user_id(),
            ErrorCode::Forbidden,
            &message,
        ))]
    }

    async fn stop(&self, state: &mut TalkState, frame: &Frame<'_>) -> Result<Replies, Refusal> {
        let target = self.target(frame)?;
        let now = self.now();
        let held = state
            .holding
            .as_ref()
            .filter(|held| held.is_for(&target))
            .map(|held| held.talk.duration(now));
        let (message_id, duration) = match held {
            Some(duration) => {
                self.end(state, now).await;
                let id = recording_id(target.channel, &target.text, self.user_id(), now, duration);
                (Some(id), duration)
            }
            // No START before it: the STOP's own message id, if it has one.
            None => (
                frame
                    .message_id
                    .and_then(|raw| crate::wire::decode_value(raw).ok())
                    .and_then(|v| v.as_str().map(str::to_owned)),
                0,
            ),
        };
        let from = sender(frame, self.user_id());
        let to = addressee(frame);
        let channel = target.channel.number();
        let mut ack = vec![from, to];
        ack.extend(message_id.as_deref().map(Field::Str));
        ack.push(Field::Str("Acknowledged"));
        let reply = Bytes::from(encode_talk(channel, MessageType::STOP_ACK, &ack));
        let payload = json(&Stopped {
            duration,
            message_id: message_id.as_deref(),
        });
        let stop = encode_talk(
            channel,
            MessageType::STOP,
            &[from, to, Field::Str(&payload)],
        );
        self.forward(&target, Bytes::from(stop));
        Ok(vec![reply])
    }

    fn text(&self, frame: &Frame<'_>) -> Result<Replies, Refusal> {
        let target = self.target(frame)?;
        if let Some(refused) = self.member(&target, frame) {
            return Ok(refused);
        }
        let text = message_text(frame)?;
        let (ack_type, channel) = (
            if frame.message_type == MessageType::TEXT {
                MessageType::TEXT_ACK
            } else {
                MessageType::INTERACTIVE_ACK
            },
            target.channel.number(),
        );
        let id = text_id(
            target.channel,
            frame.message_type.0,
            &target.text,
            self.user_id(),
            self.now(),
        );
        let from = sender(frame, self.user_id());
        let to = addressee(frame);
        let ack = encode_talk(
            channel,
            ack_type,
            &[from, to, Field::Str(&id), Field::Str("Acknowledged")],
        );
        let payload = json(&Texted {
            message_id: &id,
            text: &text,
        });
        let message = encode_talk(
            channel,
            frame.message_type,
            &[from, to, Field::Str(&payload)],
        );
        // The ack leaves first: the sender's own mailbox (a text to oneself) is read after it.
        let reply = vec![Bytes::from(ack)];
        self.forward(&target, Bytes::from(message));
        Ok(reply)
    }

    /// Ends the talk held (STOP, a new START elsewhere, a lost floor, the end of the session):
    /// the floor is freed and dashboards are told.
    pub async fn end(&self, state: &mut TalkState, now: Millis) {
        let Some(held) = state.holding.take() else {
            return;
        };
        if let Err(error) = self
            .ctx
            .store
            .release(&held.key, held.talk.floor.talk)
            .await
        {
            report(self.ctx, Err(error));
        }
        self.announce(&held.talk.floor, false, now);
    }

    /// The floor held freed itself (no audio for the idle duration): dashboards are told.
    pub fn expire(&self, state: &mut TalkState, now: Millis) {
        if let Some(held) = state.holding.take_if(|held| !held.talk.floor.held(now)) {
            self.announce(&held.talk.floor, false, now);
        }
    }

    fn announce(&self, floor: &Floor, on_air: bool, now: Millis) {
        let audience = Arc::new(Audience {
            tenant: self.peer.identity.tenant.clone(),
            groups: self.ctx.hub.groups_of(self.user),
        });
        self.ctx.store.announce(Activity {
            user_id: self.user.clone(),
            audience,
            floor: floor.clone(),
            on_air,
            timestamp: now,
        });
    }
}

/// Counts a delivery in the metrics.
pub fn count<S>(ctx: &Context<S>, delivery: Delivery) {
    ctx.metrics
        .talk_delivered
        .fetch_add(delivery.delivered, Ordering::Relaxed);
    ctx.metrics
        .talk_mailbox_full
        .fetch_add(delivery.full, Ordering::Relaxed);
}

/// The payload of a forwarded STOP, as VoicePing writes it (a JSON string).
#[derive(Serialize)]
struct Stopped<'a> {
    duration: Millis,
    message_id: Option<&'a str>,
}

/// The payload of a forwarded TEXT or INTERACTIVE (a JSON string).
#[derive(Serialize)]
struct Texted<'a> {
    message_id: &'a str,
    text: &'a str,
}

fn json<T: Serialize>(value: &T) -> String {
    // These plain structs always serialise.
    serde_json::to_string(value).unwrap_or_default()
}

/// The group START_ACK's payload: the START's timestamp as a decimal string (JavaScript's
/// `String(payload)`), "Acknowledged" without one. Anything but an integer or a string is
/// refused.
fn start_ack_text(frame: &Frame<'_>) -> Result<String, Refusal> {
    match frame.payload_value() {
        None => Ok("Acknowledged".to_owned()),
        Some(Value::Int(n)) => Ok(n.to_string()),
        Some(Value::UInt(n)) => Ok(n.to_string()),
        Some(Value::Str(s)) => Ok(s.to_owned()),
        Some(_) => Err((
            ErrorCode::BadFrame,
            "START's payload is its timestamp: an integer (ms) or a string".to_owned(),
        )),
    }
}

/// The text of a TEXT or INTERACTIVE: a JSON payload's `text`, else the payload as it is.
fn message_text(frame: &Frame<'_>) -> Result<String, Refusal> {
    let refused = || {
        (
            ErrorCode::BadFrame,
            "a TEXT's payload is a string (JSON with a text field, or the text itself)".to_owned(),
        )
    };
    match frame.payload_value() {
        None => Ok(String::new()),
        Some(Value::Str(s)) => Ok(serde_json::from_str::<serde_json::Value>(s)
            .ok()
            .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_else(|| s.to_owned())),
        Some(Value::Bin(b)) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| refused()),
        Some(map @ Value::Map(_)) => map
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(refused),
        Some(_) => Err(refused()),
    }
}
