//! What the bot keeps, in an embedded SQLite database under `FAQBOT_DATA`:
//! reply counts per kind per day, 👍/👎 per entry, and, for curation, the text
//! of questions that got no answer or a clarification, kept for a retention
//! period (30 days by default) with the user id replaced by a keyed hash.
//! Crisis messages are never stored, only counted.
//!
//! Writes go through one writer thread fed by a channel, so answering never
//! waits for the disk and a failing database only costs log lines. Reads
//! (`/stats`, `faqbot report`) use their own connection; WAL mode lets them run
//! beside the writer.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hmac::{KeyInit, Mac};
use rusqlite::{Connection, OptionalExtension, params};

use crate::responder::Kind;
use crate::text::normalize;

const DATABASE: &str = "faqbot.sqlite3";
const KEY_FILE: &str = "user-hash.key";
/// Questions kept for curation are cut to this many characters.
const MAX_STORED_CHARS: usize = 500;
const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS replies (
        day TEXT NOT NULL,
        kind TEXT NOT NULL,
        entry TEXT NOT NULL DEFAULT '',
        count INTEGER NOT NULL,
        PRIMARY KEY (day, kind, entry)
    );
    CREATE TABLE IF NOT EXISTS feedback (
        entry TEXT PRIMARY KEY,
        up INTEGER NOT NULL DEFAULT 0,
        down INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS unanswered (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        question TEXT NOT NULL,
        normalised TEXT NOT NULL,
        user_hash TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS unanswered_at ON unanswered (at);
";

/// One thing worth remembering about a reply.
#[derive(Debug, Clone)]
pub enum Event {
    Reply {
        kind: Kind,
        entry: Option<String>,
        question: String,
        user: u64,
        at: SystemTime,
    },
    Feedback {
        entry: String,
        up: bool,
    },
    /// Delete stored questions older than the retention period.
    Purge {
        now: SystemTime,
    },
    /// Answered once everything sent before it is written.
    Flush(mpsc::Sender<()>),
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    events: mpsc::Sender<Event>,
    reader: Arc<Mutex<Connection>>,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long the text of unanswered questions is kept.
    pub retention: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { retention: Duration::from_secs(30 * 86_400) }
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` and starts the writer thread.
    pub fn open(dir: &Path, options: Options) -> anyhow::Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
        let key = hash_key(dir)?;
        let path = dir.join(DATABASE);
        let writer = Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        writer.execute_batch(SCHEMA).with_context(|| format!("preparing {}", path.display()))?;
        let reader = Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let (events, received) = mpsc::channel();
        std::thread::Builder::new()
            .name("faqbot-store".into())
            .spawn(move || write_loop(writer, received, key, options))
            .context("starting the database writer")?;
        let store = Self { events, reader: Arc::new(Mutex::new(reader)), path };
        store.send(Event::Purge { now: SystemTime::now() });
        Ok(store)
    }

    /// Opens an existing database for reading only (`faqbot report`).
    pub fn open_read_only(dir: &Path) -> anyhow::Result<Connection> {
        let path = dir.join(DATABASE);
        if !path.exists() {
            bail!("no database at {}; the bot creates it when it serves", path.display());
        }
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", path.display()))
    }

    /// Queues an event; never blocks, never fails (a stopped writer is logged).
    pub fn send(&self, event: Event) {
        if self.events.send(event).is_err() {
            tracing::error!("the database writer has stopped; this event is lost");
        }
    }

    /// Waits until every event sent so far is written (or the writer is gone).
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        self.send(Event::Flush(done));
        let _ = wait.recv_timeout(Duration::from_secs(10));
    }

    /// Runs `query` on the reading connection.
    pub fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let connection = self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        query(&connection).context("reading the database")
    }
}

/// The key for hashing user ids: made once, kept beside the database, never
/// logged. Without it a stored hash cannot be linked back to an id.
fn hash_key(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(KEY_FILE);
    match fs::read(&path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => bail!("{} is too short to be a key; delete it to make a new one", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key).map_err(|error| anyhow::anyhow!("no system randomness for the key: {error}"))?;
    write_private(&path, &key)?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    #[cfg(not(unix))]
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The keyed hash stored instead of a user id.
pub fn user_hash(key: &[u8], user: u64) -> String {
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::from("unhashable");
    };
    mac.update(&user.to_be_bytes());
    mac.finalize().into_bytes().iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

fn day(at: SystemTime) -> String {
    crate::text::utc_timestamp(at)[..10].to_owned()
}

fn seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64)
}

fn write_loop(mut connection: Connection, events: mpsc::Receiver<Event>, key: Vec<u8>, options: Options) {
    let mut last_purge = SystemTime::now();
    while let Ok(first) = events.recv() {
        // Everything already waiting goes into one transaction.
        let mut batch = vec![first];
        batch.extend(events.try_iter());
        let mut flushes = Vec::new();
        if let Err(error) = write_batch(&mut connection, &mut batch, &key, options, &mut flushes) {
            tracing::error!("writing to the database failed; answering goes on: {error}");
        }
        for done in flushes {
            let _ = done.send(());
        }
        let now = SystemTime::now();
        if now.duration_since(last_purge).unwrap_or_default() > Duration::from_secs(3600) {
            last_purge = now;
            let mut purge = vec![Event::Purge { now }];
            if let Err(error) = write_batch(&mut connection, &mut purge, &key, options, &mut Vec::new()) {
                tracing::error!("purging old questions failed: {error}");
            }
        }
    }
}

fn write_batch(
    connection: &mut Connection,
    batch: &mut Vec<Event>,
    key: &[u8],
    options: Options,
    flushes: &mut Vec<mpsc::Sender<()>>,
) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    for event in batch.drain(..) {
        match event {
            Event::Reply { kind, entry, question, user, at } => {
                transaction.execute(
                    "INSERT INTO replies (day, kind, entry, count) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT (day, kind, entry) DO UPDATE SET count = count + 1",
                    params![day(at), kind.as_str(), entry.unwrap_or_default()],
                )?;
                // Only questions the knowledge base could not answer are kept,
                // for curation; never a crisis message.
                if matches!(kind, Kind::NoMatch | Kind::Clarify) {
                    let question: String = question.trim().chars().take(MAX_STORED_CHARS).collect();
                    let normalised = normalize(&question);
                    if !normalised.is_empty() {
                        transaction.execute(
                            "INSERT INTO unanswered (at, kind, question, normalised, user_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![seconds(at), kind.as_str(), question, normalised, user_hash(key, user)],
                        )?;
                    }
                }
            }
            Event::Feedback { entry, up } => {
                transaction.execute(
                    "INSERT INTO feedback (entry, up, down) VALUES (?1, ?2, ?3)
                     ON CONFLICT (entry) DO UPDATE SET up = up + ?2, down = down + ?3",
                    params![entry, i64::from(up), i64::from(!up)],
                )?;
            }
            Event::Purge { now } => {
                let cutoff = seconds(now) - options.retention.as_secs() as i64;
                let removed = transaction.execute("DELETE FROM unanswered WHERE at < ?1", params![cutoff])?;
                if removed > 0 {
                    tracing::info!("purged {removed} stored question(s) older than the retention period");
                }
            }
            Event::Flush(done) => flushes.push(done),
        }
    }
    transaction.commit()
}

/// The figures of `/stats` and `faqbot report`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Replies per kind today, and over the last 7 days.
    pub today: Vec<(String, i64)>,
    pub week: Vec<(String, i64)>,
    /// The 10 most used entries over the last 7 days.
    pub top_entries: Vec<(String, i64)>,
    /// Entries with the most 👎 (and their 👍).
    pub most_disliked: Vec<(String, i64, i64)>,
    pub crisis_week: i64,
}

pub fn stats(connection: &Connection, now: SystemTime) -> rusqlite::Result<Stats> {
    let today = day(now);
    let week_start = day(now - Duration::from_secs(6 * 86_400));
    let by_kind = |from: &str| -> rusqlite::Result<Vec<(String, i64)>> {
        let mut statement = connection
            .prepare("SELECT kind, SUM(count) FROM replies WHERE day >= ?1 GROUP BY kind ORDER BY 2 DESC, 1")?;
        let rows = statement.query_map(params![from], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect()
    };
    let mut top = connection.prepare(
        "SELECT entry, SUM(count) FROM replies WHERE day >= ?1 AND kind = 'answer' AND entry != ''
         GROUP BY entry ORDER BY 2 DESC, 1 LIMIT 10",
    )?;
    let top_entries =
        top.query_map(params![week_start], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut disliked =
        connection.prepare("SELECT entry, down, up FROM feedback WHERE down > 0 ORDER BY down DESC, entry LIMIT 10")?;
    let most_disliked =
        disliked.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect::<Result<_, _>>()?;
    let crisis_week: Option<i64> = connection
        .query_row("SELECT SUM(count) FROM replies WHERE day >= ?1 AND kind = 'crisis'", params![week_start], |row| {
            row.get(0)
        })
        .optional()?
        .flatten();
    Ok(Stats {
        today: by_kind(&today)?,
        week: by_kind(&week_start)?,
        top_entries,
        most_disliked,
        crisis_week: crisis_week.unwrap_or(0),
    })
}

/// The most frequent unanswered questions of the last `days` days, grouped by
/// their normalised text: (count, an example as typed).
pub fn unanswered(connection: &Connection, now: SystemTime, days: u32) -> rusqlite::Result<Vec<(i64, String)>> {
    let since = seconds(now) - i64::from(days) * 86_400;
    let mut statement = connection.prepare(
        "SELECT COUNT(*), MIN(question) FROM unanswered WHERE at >= ?1
         GROUP BY normalised ORDER BY 1 DESC, 2 LIMIT 20",
    )?;
    let rows = statement.query_map(params![since], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// Plain-text rendering of the stored figures (shared by `/stats` and `report`).
pub fn render_stats(stats: &Stats) -> String {
    let kinds = |rows: &[(String, i64)]| {
        if rows.is_empty() {
            return String::from("none");
        }
        rows.iter().map(|(kind, count)| format!("{kind} {count}")).collect::<Vec<_>>().join(", ")
    };
    let mut out = format!("Replies today: {}\nReplies, last 7 days: {}\n", kinds(&stats.today), kinds(&stats.week));
    out.push_str(&format!("Crisis replies, last 7 days: {}\n", stats.crisis_week));
    out.push_str("Most used entries, last 7 days:");
    if stats.top_entries.is_empty() {
        out.push_str(" none");
    }
    for (entry, count) in &stats.top_entries {
        out.push_str(&format!("\n  {count:>5}  {entry}"));
    }
    out.push_str("\nEntries with the most 👎:");
    if stats.most_disliked.is_empty() {
        out.push_str(" none");
    }
    for (entry, down, up) in &stats.most_disliked {
        out.push_str(&format!("\n  👎 {down} · 👍 {up}  {entry}"));
    }
    out
}

pub fn render_unanswered(rows: &[(i64, String)], days: u32) -> String {
    if rows.is_empty() {
        return format!("No unanswered questions in the last {days} day(s).");
    }
    let mut out = format!("Most frequent unanswered questions, last {days} day(s):");
    for (count, question) in rows {
        out.push_str(&format!("\n  {count:>4}× {question}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_hashes_are_stable_keyed_and_not_the_id() {
        let key = [7u8; 32];
        let hash = user_hash(&key, 424_242_424);
        assert_eq!(hash, user_hash(&key, 424_242_424));
        assert_ne!(hash, user_hash(&[8u8; 32], 424_242_424));
        assert_eq!(hash.len(), 32);
        assert!(!hash.contains("424242424"));
    }
}
