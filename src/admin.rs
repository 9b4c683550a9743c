//! Reloading the knowledge base into a running bot, safely: the new version is
//! loaded, validated, indexed and self-tested beside the old one (an unchanged
//! version reuses its kept self-test result, `self_test`), and swapped in with
//! one atomic pointer store only if every step passed. A question is answered
//! wholly by the old or the new version; a broken file never replaces a good
//! version. Also the file watcher behind `serve --watch`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::engine::Engine;
use crate::knowledge::{self, LoadError};
use crate::text::utc_timestamp;

/// Reloads one knowledge directory into one engine cell; one reload at a time.
pub struct Reloader {
    pub dir: PathBuf,
    pub engine: Arc<ArcSwap<Engine>>,
    lock: Mutex<()>,
}

/// A reload that went through.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub entries: usize,
    pub version: String,
    pub took: Duration,
    /// The self-test's result came from an identical earlier run (`self_test`).
    pub self_test_reused: bool,
}

/// A reload that was refused; the previous version keeps serving.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Every problem, as `path:line:col: message` or a self-test line.
    pub problems: Vec<String>,
    pub serving_entries: usize,
    pub serving_since: SystemTime,
    pub took: Duration,
}

impl Reloader {
    pub fn new(dir: PathBuf, engine: Arc<ArcSwap<Engine>>) -> Self {
        Self { dir, engine, lock: Mutex::new(()) }
    }

    /// Loads, validates, indexes and self-tests the directory, and swaps the
    /// new version in only if all of that passed. Blocking: call it off the
    /// answering path (it never holds anything answering needs).
    pub fn reload(&self) -> Result<Reloaded, Refused> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let started = Instant::now();
        let current = self.engine.load_full();
        let refuse = |problems: Vec<String>| Refused {
            problems,
            serving_entries: current.kb.entries.len(),
            serving_since: current.loaded_at,
            took: started.elapsed(),
        };
        let kb = match knowledge::load(&self.dir) {
            Ok(kb) => kb,
            Err(LoadError::Invalid(problems)) => {
                return Err(refuse(problems.problems.iter().map(ToString::to_string).collect()));
            }
            Err(error) => return Err(refuse(vec![format!("{error:#}")])),
        };
        let engine = match Engine::build(kb, current.model()) {
            Ok(engine) => engine,
            Err(error) => return Err(refuse(vec![format!("{error:#}")])),
        };
        let self_test = crate::self_test::reuse_or_run(&engine);
        if !self_test.failures.is_empty() {
            return Err(refuse(self_test.failures));
        }
        let (added, removed, changed) = diff(&current, &engine);
        let (entries, version) = (engine.kb.entries.len(), engine.kb.stats.content_hash.clone());
        self.engine.store(Arc::new(engine));
        Ok(Reloaded {
            added,
            removed,
            changed,
            entries,
            version,
            took: started.elapsed(),
            self_test_reused: self_test.reused,
        })
    }

    /// Logs a reload's outcome (for SIGHUP and `--watch`).
    pub fn reload_and_log(&self, trigger: &str) {
        match self.reload() {
            Ok(reloaded) => tracing::info!("reload ({trigger}): {reloaded}"),
            Err(refused) => tracing::warn!("reload ({trigger}) refused: {refused}"),
        }
    }
}

/// Entries added, removed and changed (any field), by id.
fn diff(old: &Engine, new: &Engine) -> (Vec<String>, Vec<String>, Vec<String>) {
    let old: BTreeMap<&str, _> = old.kb.entries.iter().map(|entry| (entry.id.as_str(), entry)).collect();
    let new_entries: BTreeMap<&str, _> = new.kb.entries.iter().map(|entry| (entry.id.as_str(), entry)).collect();
    let added = new_entries.keys().filter(|id| !old.contains_key(*id)).map(|id| id.to_string()).collect();
    let removed = old.keys().filter(|id| !new_entries.contains_key(*id)).map(|id| id.to_string()).collect();
    // Compared field by field, not through the topic index, which may shift.
    let changed = new_entries
        .iter()
        .filter_map(|(id, entry)| {
            let before = old.get(id)?;
            let same = before.question == entry.question
                && before.alternates == entry.alternates
                && before.answer == entry.answer
                && before.sources == entry.sources
                && before.related == entry.related
                && before.crisis_resources == entry.crisis_resources;
            (!same).then(|| id.to_string())
        })
        .collect();
    (added, removed, changed)
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() { String::from("none") } else { ids.join(", ") }
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reloaded in {} ms: {} entries, version {}. Added: {}. Removed: {}. Changed: {}. Self-test: {}.",
            self.took.as_millis(),
            self.entries,
            self.version,
            list(&self.added),
            list(&self.removed),
            list(&self.changed),
            if self.self_test_reused { "passed before on this exact version" } else { "passed" }
        )
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s), nothing was changed:", self.problems.len())?;
        for problem in &self.problems {
            writeln!(f, "{problem}")?;
        }
        write!(
            f,
            "Still serving the previous version ({} entries, loaded at {}).",
            self.serving_entries,
            utc_timestamp(self.serving_since)
        )
    }
}

/// A cheap summary of the knowledge files: names, sizes and change times.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files = Vec::new();
    for folder in [dir.to_path_buf(), dir.join("faq")] {
        let Ok(items) = std::fs::read_dir(&folder) else { continue };
        for item in items.flatten() {
            let path = item.path();
            if path.extension().is_some_and(|ext| ext == "toml")
                && let Ok(metadata) = item.metadata()
            {
                files.push((path, metadata.len(), metadata.modified().ok()));
            }
        }
    }
    files.sort();
    files
}

/// Watches the knowledge directory from a background thread and reloads once
/// the files have changed and then stayed the same for one more `interval`
/// (an editor saving several files counts as one change). Polling, not
/// inotify: it works the same on every system and in containers.
pub fn watch(reloader: Arc<Reloader>, interval: Duration) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("faqbot-watch".into()).spawn(move || {
        let mut seen = fingerprint(&reloader.dir);
        loop {
            std::thread::sleep(interval);
            let now = fingerprint(&reloader.dir);
            if now == seen {
                continue;
            }
            // Debounce: wait until a whole interval passes with no change.
            let mut settled = now;
            loop {
                std::thread::sleep(interval);
                let again = fingerprint(&reloader.dir);
                if again == settled {
                    break;
                }
                settled = again;
            }
            seen = settled;
            reloader.reload_and_log("files changed");
        }
    })
}
