//! One session's push-to-talk: START / AUDIO / STOP, TEXT / INTERACTIVE, DELIVERED / READ, as
//! the VoicePing router answers them. The floor rules are [`crate::ptt`]'s and the floors are the
//! store's; this module applies them to one connection's frames. [`Talker::handle`] returns what
//! the sender's own connection gets and what the others get ([`Handled`]): the session writes the
//! replies first, then hands the rest to the [`Hub`] (this router) and the store's relay (the
//! others), so an ack always leaves before what it acknowledges reaches anyone. The sender's id
//! in everything sent is the authenticated one.

use super::hub::{Delivery, Hub};
use super::session::{report, timed, Peer};
use super::Context;
use crate::metrics::inc;
use crate::presence::{Audience, Millis};
use crate::ptt::{recording_id, text_id, Audio, Channel, Claim, Floor, Talk};
use crate::store::{Activity, PresenceStore, Relayed};
use crate::visibility::scoped;
use crate::wire::{
    addressee, encode_error, encode_forward, encode_talk, encode_unauthorized_group, plain_field,
    sender, truthy, ChannelType, ErrorCode, Field, Frame, Id, MessageType, Value,
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
    holding: Option<Talk>,
    /// When the talker was last told its AUDIO had no floor.
    no_floor_told: Option<Instant>,
    /// The peer of a private talk ended for running too long: its AUDIO is dropped until the
    /// next START.
    private_ended: Option<Arc<str>>,
    /// A group talk whose floor freed itself (silence, or this router falling behind): its
    /// next AUDIO takes the floor again if nobody else took it meanwhile.
    lapsed: Option<Talk>,
}

impl TalkState {
    /// When the floor held frees itself unless audio comes (to tell dashboards it did).
    pub fn free_at(&self) -> Option<Millis> {
        self.holding.as_ref().map(|talk| talk.floor.until)
    }
}

/// What one frame makes the router send: to the sender's connection, then to others.
#[derive(Debug, Default)]
pub struct Handled {
    /// For the sender's own connection, in order, before anything else.
    pub replies: Vec<Bytes>,
    /// For the frame's group or peer, once the replies are written.
    pub forward: Option<Forward>,
}

impl Handled {
    fn reply(frame: Vec<u8>) -> Handled {
        Handled {
            replies: vec![Bytes::from(frame)],
            forward: None,
        }
    }
}

/// A frame for the members of a group or the connections of a user, on every router.
#[derive(Debug)]
pub struct Forward {
    channel: Channel,
    to: Arc<str>,
    frame: Bytes,
}

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
    /// Whether `talk` is this target's.
    fn holds(&self, talk: &Talk) -> bool {
        talk.floor.channel == self.channel && talk.floor.to == self.scoped
    }

    /// `frame` for this target.
    fn forward(&self, frame: Vec<u8>) -> Option<Forward> {
        Some(Forward {
            channel: self.channel,
            to: self.scoped.clone(),
            frame: Bytes::from(frame),
        })
    }
}

impl<S: PresenceStore> Talker<'_, S> {
    fn now(&self) -> Millis {
        self.ctx.clock.now_ms()
    }

    fn user_id(&self) -> &str {
        &self.peer.identity.user_id
    }

    /// Handles one push-to-talk frame: what the sender and the others get, or why the frame
    /// is refused.
    pub async fn handle(
        &self,
        state: &mut TalkState,
        frame: &Frame<'_>,
    ) -> Result<Handled, Refusal> {
        match frame.message_type {
            MessageType::CONNECTION => Ok(Handled::default()),
            MessageType::IMAGE => {
                inc(&self.ctx.metrics.frames_dropped);
                Ok(Handled::default())
            }
            MessageType::START => self.start(state, frame).await,
            MessageType::AUDIO => self.audio(state, frame).await,
            MessageType::STOP => self.stop(state, frame).await,
            MessageType::TEXT | MessageType::INTERACTIVE => self.text(frame),
            // DELIVERED and READ: forwarded in private, ignored in groups.
            _ => {
                let target = self.target(frame)?;
                let forward = match target.channel {
                    Channel::Private => target.forward(encode_forward(frame, self.user_id())),
                    Channel::Group => None,
                };
                Ok(Handled {
                    replies: Vec::new(),
                    forward,
                })
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
                Id::Str(s) => s.into(),
                _ => text.into_owned().into(),
            },
        })
    }

    /// Whether the talker may talk in a group target; VoicePing's refusal when not.
    fn refused(&self, target: &Target<'_>, frame: &Frame<'_>) -> Option<Vec<Bytes>> {
        if target.channel == Channel::Private || self.ctx.hub.is_member(self.user, &target.scoped) {
            return None;
        }
        let to = frame.to.unwrap_or(Id::Int(0));
        Some(vec![Bytes::from(encode_unauthorized_group(
            self.user_id(),
            to,
        ))])
    }

    /// Hands a frame to its group's or peer's connections on every router.
    pub fn forward(&self, forward: Forward) {
        let Forward { channel, to, frame } = forward;
        let hub: &Hub = &self.ctx.hub;
        let (delivery, relayed) = match channel {
            Channel::Group => (
                hub.to_group(&to, self.user, &frame),
                Relayed::Group {
                    group: to,
                    except: self.user.clone(),
                    frame,
                },
            ),
            Channel::Private => (hub.to_user(&to, &frame), Relayed::User { user: to, frame }),
        };
        count(self.ctx, delivery);
        self.ctx.store.relay(relayed);
    }

    async fn start(&self, state: &mut TalkState, frame: &Frame<'_>) -> Result<Handled, Refusal> {
        let target = self.target(frame)?;
        let from = sender(frame, self.user_id());
        let to = addressee(frame);
        let forward = target.forward(encode_forward(frame, self.user_id()));
        if target.channel == Channel::Private {
            // No floor in private: acknowledged with the payload as it came, and forwarded.
            state.private_ended = None;
            let mut fields = vec![from, to];
            fields.extend(frame.message_id.filter(|id| truthy(id)).map(plain_field));
            fields.push(
                frame
                    .payload
                    .filter(|p| truthy(p))
                    .map_or(Field::Str("Acknowledged"), plain_field),
            );
            return Ok(Handled {
                replies: vec![Bytes::from(encode_talk(1, MessageType::START_ACK, &fields))],
                forward,
            });
        }
        state.lapsed = None;
        let failed = |why| {
            Bytes::from(encode_talk(
                0,
                MessageType::START_FAILED,
                &[from, to, Field::Str(why)],
            ))
        };
        if let Some(mut refused) = self.refused(&target, frame) {
            refused.push(failed("Ack Failed"));
            return Ok(Handled {
                replies: refused,
                forward: None,
            });
        }
        let Some(ack) = start_ack_text(frame) else {
            return Ok(Handled {
                replies: vec![failed("Ack Failed")],
                forward: None,
            });
        };
        let now = self.now();
        let want = self.floor(&target, now);
        match timed(self.ctx, self.ctx.store.claim(&want, now)).await {
            Ok(Claim::Granted) => {}
            Ok(Claim::Busy) => {
                inc(&self.ctx.metrics.floors_busy);
                return Ok(Handled {
                    replies: vec![failed("Busy")],
                    forward: None,
                });
            }
            Err(error) => {
                report(self.ctx, Err(error));
                return Ok(Handled {
                    replies: vec![failed("Ack Failed")],
                    forward: None,
                });
            }
        }
        // A START again in the same group only renews the talk: on the air already.
        let again = state
            .holding
            .as_ref()
            .is_some_and(|talk| target.holds(talk));
        if !again {
            self.end(state, now).await;
            self.announce(&want, true, now);
        }
        state.holding = Some(Talk::new(want));
        let reply = encode_talk(0, MessageType::START_ACK, &[from, to, Field::Str(&ack)]);
        Ok(Handled {
            replies: vec![Bytes::from(reply)],
            forward,
        })
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

    async fn audio(&self, state: &mut TalkState, frame: &Frame<'_>) -> Result<Handled, Refusal> {
        let target = self.target(frame)?;
        let now = self.now();
        let timers = self.ctx.config.ptt_timers;
        let step = match state.holding.as_mut() {
            Some(talk) if target.holds(talk) => talk.audio(now, &timers),
            _ => Audio::Lost,
        };
        match (step, target.channel) {
            (Audio::Forward(Some(floor)), channel) => {
                // A member no more (USER_REMOVE, another router's update): the talk ends.
                let member = channel == Channel::Private
                    || self.ctx.hub.is_member(self.user, &target.scoped);
                if !member {
                    self.end(state, now).await;
                    return Ok(self.no_floor(state, &target));
                }
                if !timed(self.ctx, self.ctx.store.refresh(&floor))
                    .await
                    .unwrap_or(true)
                {
                    // Taken over (by another device of the user, who is still on the air).
                    state.holding = None;
                    return Ok(self.no_floor(state, &target));
                }
            }
            (Audio::Forward(None), _) => {}
            (Audio::TooLong, channel) => {
                if channel == Channel::Private {
                    state.private_ended = Some(target.scoped.clone());
                }
                return self.stop(state, frame).await;
            }
            (Audio::Lost, Channel::Private) => {
                if state.private_ended.as_ref() == Some(&target.scoped) {
                    return Ok(Handled::default());
                }
                // A private talk is on the air from its first audio, and never busy; only
                // another private talk of this connection ends.
                if state
                    .holding
                    .as_ref()
                    .is_some_and(|talk| talk.floor.channel == Channel::Private)
                {
                    self.end(state, now).await;
                }
                if state.holding.is_none() {
                    let want = self.floor(&target, now);
                    if let Err(error) = timed(self.ctx, self.ctx.store.claim(&want, now)).await {
                        report(self.ctx, Err(error));
                    }
                    self.announce(&want, true, now);
                    state.holding = Some(Talk::new(want));
                }
            }
            (Audio::Lost, Channel::Group) => {
                if !self.resume(state, &target, now).await {
                    return Ok(self.no_floor(state, &target));
                }
            }
        }
        Ok(Handled {
            replies: Vec::new(),
            forward: target.forward(encode_forward(frame, self.user_id())),
        })
    }

    /// AUDIO of a group talk whose floor freed itself (its talker kept silent, or this router
    /// fell behind its frames): the floor is taken again if nobody else took it meanwhile, as
    /// VoicePing, which never refuses AUDIO, would let it go on. Whether the talk goes on.
    async fn resume(&self, state: &mut TalkState, target: &Target<'_>, now: Millis) -> bool {
        let timers = self.ctx.config.ptt_timers;
        let (talk, announced_off) = match state.holding.take_if(|talk| target.holds(talk)) {
            Some(talk) => (talk, false),
            None => match state.lapsed.take_if(|talk| target.holds(talk)) {
                Some(talk) => (talk, true),
                None => return false,
            },
        };
        let again = talk.floor.refreshed(now, &timers);
        let member = self.ctx.hub.is_member(self.user, &target.scoped);
        let granted = again.held(now)
            && now < again.started.saturating_add(timers.max_talk)
            && member
            && matches!(
                timed(self.ctx, self.ctx.store.claim(&again, now)).await,
                Ok(Claim::Granted)
            );
        if granted {
            if announced_off {
                self.announce(&again, true, now);
            }
            state.holding = Some(Talk::new(again));
        } else if !announced_off {
            self.announce(&talk.floor, false, now);
        }
        granted
    }

    /// AUDIO to a group whose floor the sender does not hold: dropped, and the sender told
    /// (at most every [`NO_FLOOR_NOTICE`]).
    fn no_floor(&self, state: &mut TalkState, target: &Target<'_>) -> Handled {
        inc(&self.ctx.metrics.audio_without_floor);
        let now = Instant::now();
        if state
            .no_floor_told
            .is_some_and(|told| now.duration_since(told) < NO_FLOOR_NOTICE)
        {
            return Handled::default();
        }
        state.no_floor_told = Some(now);
        let message = format!(
            "AUDIO to group {} without its floor: send START first (and AUDIO within {} ms)",
            target.text, self.ctx.config.ptt_timers.idle
        );
        Handled::reply(encode_error(self.user_id(), ErrorCode::Forbidden, &message))
    }

    async fn stop(&self, state: &mut TalkState, frame: &Frame<'_>) -> Result<Handled, Refusal> {
        let target = self.target(frame)?;
        let now = self.now();
        let held = match state.holding.as_ref().filter(|talk| target.holds(talk)) {
            Some(talk) => {
                let duration = talk.duration(now);
                self.end(state, now).await;
                Some(duration)
            }
            // A talk whose floor freed itself is still the one this STOP ends.
            None => state
                .lapsed
                .take_if(|talk| target.holds(talk))
                .map(|talk| talk.duration(now)),
        };
        let (message_id, duration) = match held {
            Some(duration) => {
                let id = recording_id(target.channel, &target.text, self.user_id(), now, duration);
                (Some(id), duration)
            }
            // No talk before it: the STOP's own message id, if it has one.
            None => (client_message_id(frame), 0),
        };
        let from = sender(frame, self.user_id());
        let to = addressee(frame);
        let channel = target.channel.number();
        let mut ack = vec![from, to];
        ack.extend(message_id.as_deref().map(Field::Str));
        ack.push(Field::Str("Acknowledged"));
        let payload = json(&Stopped {
            duration,
            message_id: message_id.as_deref(),
        });
        let stop = encode_talk(
            channel,
            MessageType::STOP,
            &[from, to, Field::Str(&payload)],
        );
        Ok(Handled {
            replies: vec![Bytes::from(encode_talk(
                channel,
                MessageType::STOP_ACK,
                &ack,
            ))],
            forward: target.forward(stop),
        })
    }

    fn text(&self, frame: &Frame<'_>) -> Result<Handled, Refusal> {
        let target = self.target(frame)?;
        if let Some(refused) = self.refused(&target, frame) {
            return Ok(Handled {
                replies: refused,
                forward: None,
            });
        }
        let text = message_text(frame)?;
        let ack_type = if frame.message_type == MessageType::TEXT {
            MessageType::TEXT_ACK
        } else {
            MessageType::INTERACTIVE_ACK
        };
        let channel = target.channel.number();
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
        Ok(Handled {
            replies: vec![Bytes::from(ack)],
            forward: target.forward(message),
        })
    }

    /// Ends the talk held (STOP, a START elsewhere, a floor lost, the end of the session): the
    /// floor is freed and, when it was still this talk's, dashboards are told.
    pub async fn end(&self, state: &mut TalkState, now: Millis) {
        let Some(talk) = state.holding.take() else {
            return;
        };
        let released = timed(self.ctx, self.ctx.store.release(&talk.floor))
            .await
            .unwrap_or_else(|error| {
                report(self.ctx, Err(error));
                true
            });
        if released {
            self.announce(&talk.floor, false, now);
        }
    }

    /// The floor held freed itself (no audio for the idle duration): dashboards are told, and
    /// a group talk may yet resume (see [`Talker::resume`]).
    pub fn expire(&self, state: &mut TalkState, now: Millis) {
        if let Some(talk) = state.holding.take_if(|talk| !talk.floor.held(now)) {
            self.announce(&talk.floor, false, now);
            if talk.floor.channel == Channel::Group {
                state.lapsed = Some(talk);
            }
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

/// A frame's own message id as text (a string, or an integer in decimal), when it has a
/// truthy one.
fn client_message_id(frame: &Frame<'_>) -> Option<String> {
    let raw = frame.message_id.filter(|raw| truthy(raw))?;
    match crate::wire::decode_value(raw).ok()? {
        Value::Str(s) => Some(s.to_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The group START_ACK's payload, JavaScript's `String(payload)` as VoicePing sends it: the
/// timestamp in decimal, a string as it is, binary as its text, "Acknowledged" for a falsy or
/// absent one. `None` for a payload JavaScript would make nonsense of (a map, an array).
fn start_ack_text(frame: &Frame<'_>) -> Option<String> {
    if !frame.payload.is_some_and(truthy) {
        return Some("Acknowledged".to_owned());
    }
    match frame.payload_value()? {
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        Value::Timestamp(ms) => Some(ms.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Str(s) => Some(s.to_owned()),
        Value::Bin(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
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
