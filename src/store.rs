//! What the bot keeps, in an embedded SQLite database under `FAQBOT_DATA`:
//! reply counts per kind per day, 👍/👎 per entry, and, for curation, the text
//! of questions that got no answer or a clarification, kept for a retention
//! period (30 days by default) with the user id replaced by a keyed hash.
//! Crisis messages are never kept, only counted. The same database holds the
//! delivery inbox (`store/inbox.rs`): updates waiting for their reply.
//!
//! Figures go through one writer thread fed by a channel, so answering never
//! waits for them. Everything uses one connection behind a mutex: at
//! Telegram's pace (30 messages a second) that costs nothing, and it works the
//! same for the in-memory fallback. A failed write is logged once per kind of
//! failure and counted (`/stats` says its figures may be incomplete); a
//! deleted or replaced database file is noticed and recreated.

mod inbox;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hmac::{KeyInit, Mac};
use rusqlite::{Connection, OptionalExtension, params};

pub use inbox::{Delivery, Incoming, NOTICE_FIRST, NOTICE_ONLY, Outcome, Pending};

use crate::responder::Kind;
use crate::text::normalize;

const DATABASE: &str = "faqbot.sqlite3";
const KEY_FILE: &str = "user-hash.key";
/// Questions kept for curation are cut to this many characters.
const MAX_STORED_CHARS: usize = 500;
/// How often the database file is checked for having been deleted or replaced.
const IDENTITY_CHECK: Duration = Duration::from_secs(1);
const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA secure_delete = ON;
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
    /// Delete stored questions older than the retention period, and finished
    /// inbox rows older than two days.
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
    db: Arc<Db>,
    /// The database file, or `:memory:` for the fallback.
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

/// The connection and what is known about its health.
struct Db {
    connection: Mutex<Connection>,
    /// The file, `None` in memory.
    file: Option<PathBuf>,
    /// The file's device and inode when opened, and when that was last checked.
    identity: Mutex<(Option<(u64, u64)>, Instant)>,
    failed_writes: AtomicU64,
    /// Kinds of failure already logged: each is logged once, then only counted.
    logged: Mutex<HashSet<String>>,
    recreated: AtomicU64,
}

/// What `/stats` needs to say about the store itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    pub failed_writes: u64,
    /// How often the file was found deleted or replaced and recreated.
    pub recreated: u64,
    pub in_memory: bool,
}

impl Health {
    /// A warning line for `/stats` when its figures may be incomplete.
    pub fn warning(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.in_memory {
            parts.push(String::from("no database file: nothing is kept across restarts"));
        }
        if self.failed_writes > 0 {
            parts.push(format!("{} database write(s) failed since start (see the log)", self.failed_writes));
        }
        if self.recreated > 0 {
            parts.push(format!("the database file was deleted or replaced {} time(s) and recreated", self.recreated));
        }
        (!parts.is_empty()).then(|| format!("⚠ Figures may be incomplete: {}.", parts.join("; ")))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|metadata| (metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|_| (0, 0))
}

fn open_file(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    connection.busy_timeout(Duration::from_secs(5)).context("setting the busy timeout")?;
    prepare(&connection).with_context(|| format!("preparing {}", path.display()))?;
    Ok(connection)
}

fn prepare(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(SCHEMA)?;
    connection.execute_batch(inbox::SCHEMA)?;
    // A database that opens but cannot be written (read-only file or
    // directory, full disk) is an error now, not a silent loss later.
    connection.execute(
        "INSERT INTO meta (key, value) VALUES ('opened', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1",
        params![seconds(SystemTime::now())],
    )?;
    Ok(())
}

impl Db {
    /// Runs `work` on the connection. A failed write is counted and logged
    /// once per kind of failure.
    fn with<T>(
        &self,
        what: &str,
        write: bool,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> anyhow::Result<T> {
        let mut connection = lock(&self.connection);
        self.check_identity(&mut connection);
        match work(&mut connection) {
            Ok(value) => Ok(value),
            Err(error) => {
                if write {
                    self.failed_writes.fetch_add(1, Ordering::Relaxed);
                    let kind = match &error {
                        rusqlite::Error::SqliteFailure(failure, _) => format!("{:?}", failure.code),
                        other => format!("{:?}", std::mem::discriminant(other)),
                    };
                    if lock(&self.logged).insert(kind) {
                        tracing::error!(
                            "database write failed ({what}): {error}; answering goes on, and further failures of this kind are only counted (/stats)"
                        );
                    }
                }
                Err(error).with_context(|| format!("database: {what}"))
            }
        }
    }

    /// Notices a database file deleted or replaced under the running bot and
    /// recreates it: a deleted file is rebuilt from the copy still open.
    fn check_identity(&self, connection: &mut Connection) {
        let Some(path) = &self.file else { return };
        let mut known = lock(&self.identity);
        if known.1.elapsed() < IDENTITY_CHECK {
            return;
        }
        known.1 = Instant::now();
        let now = identity(path);
        if now.is_some() && now == known.0 {
            return;
        }
        self.recreated.fetch_add(1, Ordering::Relaxed);
        if now.is_none() {
            // Deleted: the open connection still reads the old file.
            let copied = connection.execute("VACUUM INTO ?1", params![path.to_string_lossy()]);
            match copied {
                Ok(_) => tracing::warn!(
                    "the database {} was deleted while running; recreated it with its data",
                    path.display()
                ),
                Err(error) => tracing::error!(
                    "the database {} was deleted while running and could not be copied back ({error}); starting an empty one",
                    path.display()
                ),
            }
        } else {
            tracing::warn!("the database {} was replaced while running; using the new file", path.display());
        }
        // The old connection is closed before the new one opens, so that its
        // closing never touches the new file's journal.
        let placeholder = match Connection::open_in_memory() {
            Ok(placeholder) => placeholder,
            Err(error) => {
                tracing::error!("cannot reopen the database: {error}");
                return;
            }
        };
        drop(std::mem::replace(connection, placeholder));
        match open_file(path) {
            Ok(fresh) => {
                *connection = fresh;
                known.0 = identity(path);
            }
            Err(error) => tracing::error!("cannot reopen the database {}: {error:#}", path.display()),
        }
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` and starts the writer thread.
    /// Fails if the database cannot be written.
    pub fn open(dir: &Path, options: Options) -> anyhow::Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
        let key = hash_key(dir)?;
        let path = dir.join(DATABASE);
        let connection = open_file(&path)?;
        Self::start(connection, Some(path.clone()), path, key, options)
    }

    /// A store that lives in memory only: used when the database cannot be
    /// opened, so that delivery works the same (but does not survive a restart).
    pub fn in_memory(options: Options) -> anyhow::Result<Self> {
        let connection = Connection::open_in_memory().context("opening an in-memory database")?;
        prepare(&connection).context("preparing the in-memory database")?;
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).map_err(|error| anyhow::anyhow!("no system randomness for the key: {error}"))?;
        Self::start(connection, None, PathBuf::from(":memory:"), key, options)
    }

    fn start(
        connection: Connection,
        file: Option<PathBuf>,
        path: PathBuf,
        key: Vec<u8>,
        options: Options,
    ) -> anyhow::Result<Self> {
        let known = file.as_deref().and_then(identity);
        let db = Arc::new(Db {
            connection: Mutex::new(connection),
            file,
            identity: Mutex::new((known, Instant::now())),
            failed_writes: AtomicU64::new(0),
            logged: Mutex::new(HashSet::new()),
            recreated: AtomicU64::new(0),
        });
        let (events, received) = mpsc::channel();
        let writer = db.clone();
        std::thread::Builder::new()
            .name("faqbot-store".into())
            .spawn(move || write_loop(&writer, received, key, options))
            .context("starting the database writer")?;
        let store = Self { events, db, path };
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

    /// Runs `query` on the connection.
    pub fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        self.db.with("reading", false, |connection| query(connection))
    }

    /// Failed writes and recreations since start.
    pub fn health(&self) -> Health {
        Health {
            failed_writes: self.db.failed_writes.load(Ordering::Relaxed),
            recreated: self.db.recreated.load(Ordering::Relaxed),
            in_memory: self.db.file.is_none(),
        }
    }

    /// Writes what is queued and moves the write-ahead log into the main file,
    /// so that a copy of the file alone is complete. Call at a clean exit.
    pub fn close(&self) {
        self.flush();
        if self.db.file.is_none() {
            return;
        }
        let checkpoint = self.db.with("checkpointing", true, |connection| {
            connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0))
        });
        match checkpoint {
            Ok(0) => tracing::info!("database checkpointed: {}", self.path.display()),
            Ok(_) => tracing::warn!("database checkpoint incomplete (busy): {}", self.path.display()),
            Err(error) => tracing::error!("{error:#}"),
        }
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
    crate::text::utc_timestamp(at).chars().take(10).collect()
}

fn seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64)
}

fn write_loop(db: &Db, events: mpsc::Receiver<Event>, key: Vec<u8>, options: Options) {
    let mut last_purge = SystemTime::now();
    while let Ok(first) = events.recv() {
        // Everything already waiting goes into one transaction.
        let mut batch = vec![first];
        batch.extend(events.try_iter());
        let mut flushes = Vec::new();
        // Failures are logged (once per kind) and counted by `with`.
        let _ = db.with("recording figures", true, |connection| {
            write_batch(connection, &mut batch, &key, options, &mut flushes)
        });
        for done in flushes {
            let _ = done.send(());
        }
        let now = SystemTime::now();
        if now.duration_since(last_purge).unwrap_or_default() > Duration::from_secs(3600) {
            last_purge = now;
            let mut purge = vec![Event::Purge { now }];
            let _ = db.with("purging old questions", true, |connection| {
                write_batch(connection, &mut purge, &key, options, &mut Vec::new())
            });
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
                inbox::purge(&transaction, now)?;
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

/// Each distinct stored question of the last `days` days: its normalised
/// form, the text as typed and how often it was asked that way. For grouping
/// (`report`); the crisis check is the reader's.
pub fn unanswered_texts(
    connection: &Connection,
    now: SystemTime,
    days: u32,
) -> rusqlite::Result<Vec<(String, String, i64)>> {
    let since = seconds(now) - i64::from(days) * 86_400;
    let mut statement = connection.prepare(
        "SELECT normalised, question, COUNT(*) FROM unanswered WHERE at >= ?1
         GROUP BY normalised, question ORDER BY 1, 3 DESC, 2",
    )?;
    let rows = statement.query_map(params![since], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    rows.collect()
}

/// The 👎 count of every entry that has one.
pub fn dislikes(connection: &Connection) -> rusqlite::Result<std::collections::HashMap<String, i64>> {
    let mut statement = connection.prepare("SELECT entry, down FROM feedback WHERE down > 0")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
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
