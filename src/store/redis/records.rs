//! The Redis store's one way to change presence: read the records of a batch's users, apply the
//! writes to them with [`Record`]'s rules, and write each back with `apply.lua`, a
//! compare-and-set on the record's revision that also indexes, expires and publishes. A record
//! another router changed meanwhile is read again and its writes applied again.

use super::{Shared, Write};
use crate::presence::{Audience, ConnKey, Millis, Record, Stated, Status, Update};
use crate::visibility::in_tenant;
use fred::prelude::{ClientLike, HashesInterface, SetsInterface, SortedSetsInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::{debug, warn};

/// How often one batch reads a record again after losing a race for it.
const MAX_ATTEMPTS: usize = 8;

/// One user's writes of a batch, in order.
struct UserWrites {
    user_id: Arc<str>,
    writes: Vec<Write>,
}

/// Applies `batch`; returns the writes that did not land (Redis failed), each user's in order.
pub(super) async fn apply(shared: &Shared, batch: Vec<Write>) -> Vec<Write> {
    let mut todo = by_user(batch);
    let mut failed = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        if todo.is_empty() {
            break;
        }
        let current = std::mem::take(&mut todo);
        let records = read_raw(
            shared,
            current.iter().map(|u| {
                let connects = u.writes.iter().any(|w| matches!(w, Write::Connect { .. }));
                (&u.user_id, connects)
            }),
        )
        .await;
        let now = shared.clock.now_ms();
        let mut calls = Vec::new();
        let mut waiting = Vec::new();
        let mut index_only = Vec::new();
        for (user, read) in current.into_iter().zip(records) {
            let Raw {
                revision,
                json: before,
                groups,
            } = match read {
                Ok(read) => read,
                Err(error) => {
                    failed.extend(give_up_or_retry(&error, user.writes));
                    continue;
                }
            };
            let old = before.as_deref().and_then(parse);
            let mut record = old.clone().unwrap_or_default();
            let mut updates = Vec::new();
            let mut wake = false;
            for write in &user.writes {
                wake |= matches!(write, Write::Wake { .. });
                decide(shared, &mut record, write, &groups, now, &mut updates);
            }
            let json = serde_json::to_string(&record).unwrap_or_default();
            // Nothing changed: nothing to write, but a wake sets the index right (a stale score
            // would bring the sweeper back to this user at every sweep).
            let unchanged = match &before {
                Some(before) => *before == json,
                None => record == Record::default(),
            };
            if unchanged {
                if wake && before.is_some() {
                    index_only.push((user.user_id.clone(), record));
                }
                continue;
            }
            let change = Change {
                user_id: &user.user_id,
                revision,
                record: &record,
                old: old.as_ref(),
                json,
                updates: &updates,
            };
            calls.push(call(shared, change, now));
            waiting.push(user);
        }
        set_index(shared, &index_only, now).await;
        if calls.is_empty() {
            break;
        }
        let results = run(shared, calls).await;
        let mut conflicts = Vec::new();
        for (user, result) in waiting.into_iter().zip(results) {
            match result {
                Ok(Value::Integer(-1)) => conflicts.push(user),
                Ok(_) => {}
                Err(error) => failed.extend(give_up_or_retry(&error, user.writes)),
            }
        }
        todo = conflicts;
    }
    if !todo.is_empty() {
        warn!(
            users = todo.len(),
            "presence records kept changing; writing them later"
        );
        failed.extend(todo.into_iter().flat_map(|u| u.writes));
    }
    failed
}

/// The writes to send again after `error`: all of them when Redis may answer next time (it was
/// unreachable, slow or busy), none when it refused them (a wrong type under a presence key, a
/// script error): retrying those would hold every later write up behind them for ever.
fn give_up_or_retry(error: &fred::error::Error, writes: Vec<Write>) -> Vec<Write> {
    use fred::error::ErrorKind;
    match error.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Backpressure
        | ErrorKind::Routing
        | ErrorKind::Cluster => {
            debug!(%error, "presence write failed; sending it again");
            writes
        }
        _ => {
            warn!(%error, writes = writes.len(), "Redis refused presence writes; dropping them");
            Vec::new()
        }
    }
}

/// Sets the deadline index of users whose record a wake left unchanged.
async fn set_index(shared: &Shared, users: &[(Arc<str>, Record)], now: Millis) {
    if users.is_empty() {
        return;
    }
    let pipe = shared.client.pipeline();
    for (user_id, record) in users {
        let queued: Result<(), _> = match record.next_deadline(&shared.rules) {
            Some(deadline) if record.status() == Status::Online => {
                pipe.zadd(
                    shared.keys.deadlines(),
                    None,
                    None,
                    false,
                    false,
                    (deadline.max(now) as f64, user_id.as_ref()),
                )
                .await
            }
            _ => pipe.zrem(shared.keys.deadlines(), user_id.as_ref()).await,
        };
        if let Err(error) = queued {
            debug!(%error, "could not queue an index update");
        }
    }
    let _ = pipe.try_all::<Value>().await;
}

/// The writes of a batch grouped by user, each user's in order, users in order of appearance.
fn by_user(batch: Vec<Write>) -> Vec<UserWrites> {
    let mut index: HashMap<Arc<str>, usize> = HashMap::new();
    let mut users: Vec<UserWrites> = Vec::new();
    for write in batch {
        let Some(user_id) = write.user_id().cloned() else {
            continue;
        };
        let slot = *index.entry(user_id.clone()).or_insert_with(|| {
            users.push(UserWrites {
                user_id,
                writes: Vec::new(),
            });
            users.len() - 1
        });
        users[slot].writes.push(write);
    }
    users
}

/// One write, decided by the rules. A connect joins the groups of its token and those the
/// user's membership set in Redis holds for its tenant (`stored`: written by this router or by
/// a VoicePing router).
fn decide(
    shared: &Shared,
    record: &mut Record,
    write: &Write,
    stored: &[String],
    now: Millis,
    out: &mut Vec<Update>,
) {
    let rules = &shared.rules;
    let key = |conn| ConnKey {
        router: shared.router_id,
        conn,
    };
    match write {
        Write::Connect { device, at } => {
            let tenant = device.audience.tenant.as_deref();
            let mut joining = Audience::clone(&device.audience);
            joining.groups.extend(
                stored
                    .iter()
                    .filter(|g| in_tenant(g, tenant).is_some_and(crate::auth::valid_group_id))
                    .map(|g| Arc::from(g.as_str())),
            );
            joining.groups.sort_unstable();
            joining.groups.dedup();
            record.connect(
                rules,
                &device.user_id,
                key(device.conn),
                device.device_id.clone(),
                &joining,
                *at,
                out,
            )
        }
        Write::Heartbeat { device, at } => {
            // A live connection the record does not know (its connect was lost: a full queue,
            // a Redis that came back from an old save) is registered again by its heartbeat.
            if !record.has_conn(key(device.conn)) && shared.live().contains_key(&device.conn) {
                record.connect(
                    rules,
                    &device.user_id,
                    key(device.conn),
                    device.device_id.clone(),
                    &device.audience,
                    *at,
                    out,
                );
            }
            record.heartbeat(rules, &device.user_id, key(device.conn), *at, out)
        }
        Write::Leave { device, at } => {
            record.disconnect(rules, &device.user_id, key(device.conn), *at, out)
        }
        Write::Wake { user_id, at } => record.wake(rules, user_id, *at, out),
        Write::Restore { device } => record.connect(
            rules,
            &device.user_id,
            key(device.conn),
            device.device_id.clone(),
            &device.audience,
            now,
            out,
        ),
        Write::Regroup {
            user_id,
            change,
            at,
        } => record.regroup(rules, user_id, change, *at, out),
        Write::State {
            user_id,
            stated,
            at,
        } => record.state(rules, user_id, stated, *at, out),
        Write::Barrier(_) => {}
    }
}

/// Each user's revision and record (`None` for a user Redis does not know).
pub(super) async fn read_records<'a>(
    shared: &Shared,
    users: impl Iterator<Item = &'a Arc<str>>,
) -> Result<Vec<(String, Option<Record>)>, fred::error::Error> {
    read_raw(shared, users.map(|user| (user, false)))
        .await
        .into_iter()
        .map(|read| {
            let read = read?;
            Ok((read.revision, read.json.as_deref().and_then(parse)))
        })
        .collect()
}

/// A record's JSON, read; an unreadable one is started afresh (and said so).
fn parse(json: &str) -> Option<Record> {
    serde_json::from_str(json)
        .map_err(|error| warn!(%error, "unreadable presence record; starting afresh"))
        .ok()
}

/// One user's record as stored.
struct Raw {
    /// Its revision ('' for none).
    revision: String,
    /// Its JSON.
    json: Option<String>,
    /// The user's membership set, when asked for.
    groups: Vec<String>,
}

/// Each user's revision and record JSON, as stored, and their membership set when asked for
/// (`true`), or why it could not be read.
async fn read_raw<'a>(
    shared: &Shared,
    users: impl Iterator<Item = (&'a Arc<str>, bool)>,
) -> Vec<Result<Raw, fred::error::Error>> {
    let pipe = shared.client.pipeline();
    let mut with_groups = Vec::new();
    for (user, groups) in users {
        let queued: Result<(), _> = pipe.hmget(shared.keys.meta(user), vec!["rev", "rec"]).await;
        if let Err(error) = queued {
            debug!(%error, "could not queue a record read");
        }
        if groups {
            let queued: Result<(), _> = pipe.smembers(shared.keys.user_groups(user)).await;
            if let Err(error) = queued {
                debug!(%error, "could not queue a membership read");
            }
        }
        with_groups.push(groups);
    }
    if with_groups.is_empty() {
        return Vec::new();
    }
    let mut replies = pipe.try_all::<Value>().await.into_iter();
    let mut next = || {
        replies
            .next()
            .unwrap_or_else(|| Err(fred::error::Error::new_canceled()))
    };
    with_groups
        .into_iter()
        .map(|groups| {
            let record = next();
            let members = if groups { next() } else { Ok(Value::Null) };
            let mut fields = match record? {
                Value::Array(fields) => fields.into_iter(),
                _ => Vec::new().into_iter(),
            };
            let revision = fields
                .next()
                .and_then(|v| v.as_string())
                .unwrap_or_default();
            let groups = match members? {
                Value::Array(members) => members.iter().filter_map(Value::as_string).collect(),
                _ => Vec::new(),
            };
            Ok(Raw {
                revision,
                json: fields.next().and_then(|v| v.as_string()),
                groups,
            })
        })
        .collect()
}

/// A change as it is published on `presence:updates` (the script adds `seq`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    user_id: &'a str,
    status: &'static str,
    version: u64,
    last_seen: Millis,
    timestamp: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "is_default")]
    stated: &'a Stated,
    audience: &'a Audience,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<&'a Audience>,
}

fn is_default(stated: &&Stated) -> bool {
    **stated == Stated::default()
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Online => "online",
        Status::Offline => "offline",
    }
}

/// One user's decided record, to write.
struct Change<'a> {
    user_id: &'a str,
    /// The revision it was decided on ('' for a new record).
    revision: String,
    record: &'a Record,
    /// The record as read, to send only the seed fields that changed.
    old: Option<&'a Record>,
    json: String,
    updates: &'a [Update],
}

/// The `EVALSHA apply` arguments that write a change.
fn call(shared: &Shared, change: Change<'_>, now: Millis) -> Vec<String> {
    let keys = &shared.keys;
    let rules = &shared.rules;
    let record = change.record;
    let online = record.status() == Status::Online;
    let deadline = record.next_deadline(rules).unwrap_or(now);
    let (user_ttl, indexed, keep) = if online {
        (record.expires_at().saturating_sub(now).max(1), deadline, 0)
    } else {
        (0, 0, deadline.saturating_sub(now).max(1))
    };
    let json = if record.forgotten(rules, now) {
        String::new()
    } else {
        change.json
    };
    // A seed field the record had already is not written again ('' = unchanged).
    let changed = |field: &dyn Fn(&Record) -> String| {
        let value = field(record);
        match change.old {
            Some(old) if field(old) == value => String::new(),
            _ => value,
        }
    };
    // Membership mirrored into VoicePing's sets: the groups joined, then those left.
    let old_groups = change.old.map_or(&[][..], |old| &old.audience().groups[..]);
    let new_groups = &record.audience().groups[..];
    let joined: Vec<&Arc<str>> = new_groups
        .iter()
        .filter(|g| old_groups.binary_search(g).is_err())
        .collect();
    let left: Vec<&Arc<str>> = old_groups
        .iter()
        .filter(|g| new_groups.binary_search(g).is_err())
        .collect();
    let mut args = vec![
        shared.scripts.apply.sha1().to_string(),
        (5 + joined.len() + left.len()).to_string(),
        keys.meta(change.user_id),
        keys.user(change.user_id),
        keys.deadlines(),
        keys.seq(),
        keys.user_groups(change.user_id),
    ];
    args.extend(joined.iter().chain(&left).map(|g| keys.group_members(g)));
    args.extend([
        change.user_id.to_owned(),
        change.revision,
        json,
        changed(&|r| status_text(r.status()).to_owned()),
        changed(&|r| r.last_seen().to_string()),
        changed(&|r| r.device_id().map(|d| d.to_string()).unwrap_or_default()),
        changed(&|r| r.version().to_string()),
        user_ttl.to_string(),
        indexed.to_string(),
        keep.to_string(),
        joined.len().to_string(),
        left.len().to_string(),
    ]);
    args.extend(joined.iter().chain(&left).map(|g| g.to_string()));
    args.push(keys.updates());
    for update in change.updates {
        let message = Message {
            user_id: &update.user_id,
            status: status_text(update.status),
            version: update.version,
            last_seen: update.last_seen,
            timestamp: update.timestamp,
            device_id: update.device_id.as_deref(),
            stated: &update.stated,
            audience: &update.audience,
            before: update.before.as_deref(),
        };
        args.push(keys.status_channel(update.status));
        args.push(serde_json::to_string(&message).unwrap_or_default());
    }
    args
}

/// EVALSHA as a custom command (pipelines have no Lua interface).
fn evalsha() -> CustomCommand {
    CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false)
}

/// Runs the calls as one pipeline; calls refused for a missing script run again once the
/// script is loaded.
async fn run(shared: &Shared, calls: Vec<Vec<String>>) -> Vec<Result<Value, fred::error::Error>> {
    let mut results = pipeline(shared, &calls).await;
    let noscript = |r: &Result<Value, fred::error::Error>| matches!(r, Err(e) if e.details().starts_with("NOSCRIPT"));
    if results.iter().any(noscript) && shared.scripts.load(&shared.client).await.is_ok() {
        let again: Vec<usize> = (0..results.len())
            .filter(|i| noscript(&results[*i]))
            .collect();
        let calls_again: Vec<Vec<String>> = again.iter().map(|i| calls[*i].clone()).collect();
        for (i, result) in again.into_iter().zip(pipeline(shared, &calls_again).await) {
            results[i] = result;
        }
    }
    results
}

async fn pipeline(
    shared: &Shared,
    calls: &[Vec<String>],
) -> Vec<Result<Value, fred::error::Error>> {
    let pipe = shared.client.pipeline();
    for call in calls {
        let queued: Result<(), _> = pipe.custom(evalsha(), call.clone()).await;
        if let Err(error) = queued {
            debug!(%error, "could not queue a presence write");
        }
    }
    pipe.try_all::<Value>().await
}
