//! The push-to-talk rules, and nothing else: no I/O, no clock, no locks.
//!
//! A group has one floor: [`claim`] decides who gets it, and a [`Talk`] is one connection's hold
//! on a floor while its user talks (audio refreshes it; it ends by STOP, by running past
//! `MAXIMUM_AUDIO_DURATION`, or by staying idle for `MAXIMUM_IDLE_DURATION`). Every store keeps
//! [`Floor`] records and changes them only as decided here; on Redis a floor is a record written
//! by compare-and-set on its [`Floor::talk`], so that the floor is decided once for all routers.
//! Private talk has no contention, but is kept as a floor of its own (keyed by the talker) so that
//! a snapshot can say who is on air. The ids of VoicePing's acks are made here too.

use crate::presence::Millis;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// VoicePing's timers, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// `MAXIMUM_IDLE_DURATION`: a floor without START or AUDIO for this long frees itself.
    pub idle: Millis,
    /// `MAXIMUM_AUDIO_DURATION`: a talk this long is ended as by a STOP.
    pub max_talk: Millis,
    /// `GROUP_BUSY_TIMEOUT`: a floor is free this long after its START, whatever happens.
    pub busy_timeout: Millis,
}

impl Timers {
    /// How often at most a held floor is written to the store while audio flows: each write
    /// holds the floor this much beyond the idle duration, so that a floor never frees itself
    /// sooner than `idle` after the last audio (and at most `idle + refresh_every` after it),
    /// while 50 audio frames a second cost a few writes.
    pub fn refresh_every(&self) -> Millis {
        (self.idle / 4).max(1)
    }

    /// Until when a floor last written at `now` (a START or a refreshing AUDIO) is held.
    fn hold_from(&self, now: Millis) -> Millis {
        now.saturating_add(self.idle)
            .saturating_add(self.refresh_every())
    }
}

/// Which kind of channel a talk is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    /// A group (channelType 0).
    Group,
    /// One-to-one (channelType 1).
    Private,
}

impl Channel {
    /// The channelType number.
    pub fn number(self) -> u64 {
        match self {
            Channel::Group => 0,
            Channel::Private => 1,
        }
    }
}

/// One floor as every store keeps it: who holds it, since when, and until when it is theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    /// Names this hold of the floor, unique among routers: the revision a store compares.
    #[serde(rename = "k")]
    pub talk: u64,
    /// The talker (a tenant-scoped user id).
    #[serde(rename = "h")]
    pub holder: Arc<str>,
    /// Group or private.
    #[serde(rename = "c")]
    pub channel: Channel,
    /// The group, or the peer of a private talk (tenant-scoped).
    #[serde(rename = "t")]
    pub to: Arc<str>,
    /// When the talk started.
    #[serde(rename = "s")]
    pub started: Millis,
    /// The floor frees itself at this time unless refreshed.
    #[serde(rename = "u")]
    pub until: Millis,
}

impl Floor {
    /// A new hold of a floor, from `now`.
    pub fn new(
        talk: u64,
        holder: Arc<str>,
        channel: Channel,
        to: Arc<str>,
        now: Millis,
        timers: &Timers,
    ) -> Floor {
        Floor {
            talk,
            holder,
            channel,
            to,
            started: now,
            until: timers
                .hold_from(now)
                .min(now.saturating_add(timers.busy_timeout)),
        }
    }

    /// Whether the floor is still held at `now`.
    pub fn held(&self, now: Millis) -> bool {
        now < self.until
    }

    /// The floor refreshed by activity at `now`: idle time restarts, within the busy timeout.
    pub fn refreshed(&self, now: Millis, timers: &Timers) -> Floor {
        Floor {
            until: timers
                .hold_from(now)
                .min(self.started.saturating_add(timers.busy_timeout)),
            ..self.clone()
        }
    }
}

/// What a START gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The floor is the claimant's.
    Granted,
    /// Another user holds it.
    Busy,
}

/// Whether `want` may take a floor currently recorded as `current` at `now`: busy iff another
/// user holds it and it has not freed itself. The same user starting again takes it anew.
pub fn claim(current: Option<&Floor>, want: &Floor, now: Millis) -> Claim {
    match current {
        Some(floor) if floor.held(now) && floor.holder != want.holder => Claim::Busy,
        _ => Claim::Granted,
    }
}

/// One connection's hold on a floor while its user talks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Talk {
    /// The floor as last written to the store.
    pub floor: Floor,
}

/// What an AUDIO frame of the talker does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    /// Forward it; write this refreshed floor first when there is one.
    Forward(Option<Floor>),
    /// The talk ran past `MAXIMUM_AUDIO_DURATION`: end it as by a STOP.
    TooLong,
    /// The floor freed itself meanwhile (idle): the talker no longer holds it.
    Lost,
}

impl Talk {
    /// A hold that starts with `floor`, just written.
    pub fn new(floor: Floor) -> Talk {
        Talk { floor }
    }

    /// An AUDIO frame at `now`.
    pub fn audio(&mut self, now: Millis, timers: &Timers) -> Audio {
        if !self.floor.held(now) {
            return Audio::Lost;
        }
        if now >= self.floor.started.saturating_add(timers.max_talk) {
            return Audio::TooLong;
        }
        // Written again only once the floor would free itself sooner than `idle` from now.
        if self.floor.until >= now.saturating_add(timers.idle) {
            return Audio::Forward(None);
        }
        let refreshed = self.floor.refreshed(now, timers);
        if refreshed.until == self.floor.until {
            // Capped by the busy timeout: nothing to write.
            return Audio::Forward(None);
        }
        self.floor = refreshed;
        Audio::Forward(Some(self.floor.clone()))
    }

    /// How long the talk lasted at `now`, in milliseconds.
    pub fn duration(&self, now: Millis) -> Millis {
        now.saturating_sub(self.floor.started)
    }
}

impl Floor {
    /// The store's key of this floor: its group's (`g:{group}`), one for every talker of the
    /// group; or, for a private talk, its own (`p:{talker}:{talk}`): private talk is never busy,
    /// and each connection of a user may talk privately at once.
    pub fn key(&self) -> String {
        match self.channel {
            Channel::Group => format!("g:{}", self.to),
            Channel::Private => format!("p:{}:{}", self.holder, self.talk),
        }
    }
}

/// The recording id a STOP_ACK carries: `{ch}_3_{to}_{from}_{nowMs}_{duration}ms.opus`.
pub fn recording_id(
    channel: Channel,
    to: &str,
    from: &str,
    now: Millis,
    duration: Millis,
) -> String {
    format!("{}_3_{to}_{from}_{now}_{duration}ms.opus", channel.number())
}

/// The id a TEXT_ACK / INTERACTIVE_ACK carries: `{ch}_{type}_{to}_{from}_{nowMs}.txt`.
pub fn text_id(channel: Channel, message_type: u64, to: &str, from: &str, now: Millis) -> String {
    format!("{}_{message_type}_{to}_{from}_{now}.txt", channel.number())
}

#[cfg(test)]
mod tests;
