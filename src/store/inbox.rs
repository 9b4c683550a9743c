//! The delivery inbox: every update the bot must answer is written here
//! before Telegram is told it arrived (the polling offset, or the webhook's
//! 200), and leaves only with a recorded outcome. A restart, even after
//! kill -9, resumes what is pending; an update id seen before is never
//! answered twice. How far a reply of several messages got is kept too, so a
//! resumed reply does not repeat its first parts.
//!
//! The update's text is kept only while it waits: once answered, the body is
//! cleared (with `secure_delete`, its bytes are overwritten) and only the id,
//! the chat and the outcome remain, for two days, to recognise redeliveries.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS inbox (
        id INTEGER PRIMARY KEY,
        update_id INTEGER NOT NULL UNIQUE,
        lane INTEGER NOT NULL,
        received INTEGER NOT NULL,
        body TEXT,
        flags INTEGER NOT NULL DEFAULT 0,
        progress INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending',
        done_at INTEGER
    );
    CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (lane, id) WHERE state = 'pending';
    CREATE INDEX IF NOT EXISTS inbox_waiting ON inbox (id) WHERE state = 'pending';
    CREATE INDEX IF NOT EXISTS inbox_done ON inbox (state, done_at);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// Finished rows are kept this long to recognise a redelivered update.
const KEEP_DONE: Duration = Duration::from_secs(2 * 86_400);

/// `flags`: send the flood notice instead of a reply.
pub const NOTICE_ONLY: i64 = 1;
/// `flags`: send the flood notice before the reply (older questions of this
/// chat were dropped to keep its backlog bounded).
pub const NOTICE_FIRST: i64 = 2;

/// An update to keep.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub update_id: i64,
    /// The chat the reply goes to: one reply at a time per lane, in order.
    pub lane: i64,
    /// The update as JSON.
    pub body: String,
    pub flags: i64,
    /// Dropped at once (the flood guard's silence): recorded, never answered.
    pub dropped: bool,
}

/// An update waiting for its reply.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub update_id: i64,
    pub lane: i64,
    pub received: SystemTime,
    pub body: String,
    pub flags: i64,
    /// Messages of the reply already confirmed by Telegram.
    pub progress: usize,
}

/// How an update left the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Telegram kept failing until the age limit passed.
    GivenUp,
    /// Telegram refused for good (the user blocked the bot, the chat is gone).
    Refused,
    /// The update could not be read or its handler panicked.
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::GivenUp => "given_up",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// Delivery figures for `/stats`: what waits now, and outcomes over 7 days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    pub pending: i64,
    pub sent: i64,
    pub given_up: i64,
    pub refused: i64,
    pub failed: i64,
    pub dropped: i64,
}

impl Delivery {
    pub fn render(&self) -> String {
        format!(
            "Delivery, last 7 days: sent {}, given up {}, refused by Telegram {}, failed {}, dropped (flooding) {}; waiting now: {}",
            self.sent, self.given_up, self.refused, self.failed, self.dropped, self.pending
        )
    }
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

fn offset_key(bot: i64) -> String {
    format!("offset:{bot}")
}

impl Store {
    /// Keeps `incoming` (update ids seen before are ignored) and, in the same
    /// transaction, the next polling offset of bot `bot`. A chat with more
    /// than `per_chat` updates waiting loses its oldest ones (never the one
    /// being answered) and gets one notice. Returns how many are new.
    pub fn inbox_add(
        &self,
        incoming: &[Incoming],
        bot: i64,
        next_offset: Option<i64>,
        per_chat: usize,
    ) -> anyhow::Result<usize> {
        let now = millis(SystemTime::now());
        self.db.with("keeping updates", true, |connection| {
            let transaction = connection.transaction()?;
            let mut added = 0;
            let mut lanes = HashSet::new();
            for update in incoming {
                let (state, body, done) =
                    if update.dropped { ("dropped", None, Some(now)) } else { ("pending", Some(&update.body), None) };
                added += transaction.execute(
                    "INSERT INTO inbox (update_id, lane, received, body, flags, state, done_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (update_id) DO NOTHING",
                    params![update.update_id, update.lane, now, body, update.flags, state, done],
                )?;
                if !update.dropped {
                    lanes.insert(update.lane);
                }
            }
            for lane in lanes {
                bound_lane(&transaction, lane, per_chat, now)?;
            }
            if let Some(offset) = next_offset {
                transaction.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = MAX(value, ?2)",
                    params![offset_key(bot), offset],
                )?;
            }
            transaction.commit()?;
            Ok(added)
        })
    }

    /// The polling offset to resume from, if bot `bot` ever stored one.
    pub fn inbox_offset(&self, bot: i64) -> anyhow::Result<Option<i64>> {
        self.db.with("reading the offset", false, |connection| {
            connection
                .query_row("SELECT value FROM meta WHERE key = ?1", params![offset_key(bot)], |row| row.get(0))
                .optional()
        })
    }

    /// The oldest waiting update of each chat not in `busy`, oldest first, at
    /// most `limit`.
    pub fn inbox_next(&self, busy: &HashSet<i64>, limit: usize) -> anyhow::Result<Vec<Pending>> {
        self.db.with("reading the inbox", false, |connection| {
            let mut statement = connection.prepare_cached(
                // Walks the waiting rows oldest first and keeps each chat's
                // oldest: a few index lookups per row, however long the backlog.
                "SELECT i.id, i.update_id, i.lane, i.received, i.body, i.flags, i.progress FROM inbox i
                 WHERE i.state = 'pending' AND NOT EXISTS (
                     SELECT 1 FROM inbox j WHERE j.state = 'pending' AND j.lane = i.lane AND j.id < i.id)
                 ORDER BY i.id LIMIT ?1",
            )?;
            let rows = statement.query_map(params![(limit + busy.len()) as i64], |row| {
                Ok(Pending {
                    id: row.get(0)?,
                    update_id: row.get(1)?,
                    lane: row.get(2)?,
                    received: UNIX_EPOCH + Duration::from_millis(row.get::<_, i64>(3)?.max(0) as u64),
                    body: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    flags: row.get(5)?,
                    progress: row.get::<_, i64>(6)?.max(0) as usize,
                })
            })?;
            let mut next = Vec::new();
            for row in rows {
                let row = row?;
                if !busy.contains(&row.lane) && next.len() < limit {
                    next.push(row);
                }
            }
            Ok(next)
        })
    }

    /// Records that the first `progress` messages of a reply went out.
    pub fn inbox_progress(&self, id: i64, progress: usize) -> anyhow::Result<()> {
        self.db.with("recording a sent message", true, |connection| {
            connection.execute("UPDATE inbox SET progress = ?2 WHERE id = ?1", params![id, progress as i64])?;
            Ok(())
        })
    }

    /// Records how an update left the inbox and forgets its text.
    pub fn inbox_finish(&self, id: i64, outcome: Outcome) -> anyhow::Result<()> {
        let now = millis(SystemTime::now());
        self.db.with("recording a reply's outcome", true, |connection| {
            connection.execute(
                "UPDATE inbox SET state = ?2, body = NULL, done_at = ?3 WHERE id = ?1",
                params![id, outcome.as_str(), now],
            )?;
            Ok(())
        })
    }

    /// Delivery figures: waiting now, and outcomes over the last 7 days.
    pub fn delivery(&self, now: SystemTime) -> anyhow::Result<Delivery> {
        let since = millis(now) - 7 * 86_400_000;
        self.db.with("reading delivery figures", false, |connection| {
            let mut figures = Delivery::default();
            let mut statement = connection
                .prepare("SELECT state, COUNT(*) FROM inbox WHERE state = 'pending' OR done_at >= ?1 GROUP BY state")?;
            let rows = statement.query_map(params![since], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))?;
            for row in rows {
                let (state, count) = row?;
                match state.as_str() {
                    "pending" => figures.pending = count,
                    "sent" => figures.sent = count,
                    "given_up" => figures.given_up = count,
                    "refused" => figures.refused = count,
                    "failed" => figures.failed = count,
                    "dropped" => figures.dropped = count,
                    _ => {}
                }
            }
            Ok(figures)
        })
    }
}

/// Keeps at most `per_chat` updates waiting in `lane`: the oldest after the
/// one being answered are dropped, and the next one carries the notice.
fn bound_lane(transaction: &Transaction<'_>, lane: i64, per_chat: usize, now: i64) -> rusqlite::Result<()> {
    let waiting: i64 = transaction.query_row(
        "SELECT COUNT(*) FROM inbox WHERE state = 'pending' AND lane = ?1",
        params![lane],
        |row| row.get(0),
    )?;
    let excess = waiting - per_chat.max(2) as i64;
    if excess <= 0 {
        return Ok(());
    }
    // The head may be in flight: it stays.
    transaction.execute(
        "UPDATE inbox SET state = 'dropped', body = NULL, done_at = ?3 WHERE id IN (
             SELECT id FROM inbox WHERE state = 'pending' AND lane = ?1 ORDER BY id LIMIT ?2 OFFSET 1)",
        params![lane, excess, now],
    )?;
    let noticed: i64 = transaction.query_row(
        "SELECT COUNT(*) FROM inbox WHERE state = 'pending' AND lane = ?1 AND flags != 0",
        params![lane],
        |row| row.get(0),
    )?;
    if noticed == 0 {
        transaction.execute(
            "UPDATE inbox SET flags = ?2 WHERE id = (
                 SELECT id FROM inbox WHERE state = 'pending' AND lane = ?1 ORDER BY id LIMIT 1 OFFSET 1)",
            params![lane, NOTICE_FIRST],
        )?;
    }
    Ok(())
}

/// Forgets finished rows older than two days.
pub(super) fn purge(transaction: &Transaction<'_>, now: SystemTime) -> rusqlite::Result<()> {
    let cutoff = millis(now) - KEEP_DONE.as_millis() as i64;
    transaction.execute("DELETE FROM inbox WHERE state != 'pending' AND done_at < ?1", params![cutoff])?;
    Ok(())
}
