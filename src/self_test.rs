//! The self-test's results, kept between runs. The self-test asks every
//! phrasing (`responder::self_test`) and takes most of a reload's time. Its
//! result depends only on the knowledge base, the model and this program, so
//! it is kept in the model's cache directory under a hash of all three. A
//! reload of an unchanged knowledge base (SIGHUP, `--watch`, a reload after
//! `faqbot check`) reuses it; any change (one character of one file,
//! another model, a rebuilt binary) misses and runs the self-test in full.
//! Without a cache directory, or when the program cannot tell which file it
//! runs from, nothing is kept and every run is in full.

use std::fmt::Write as _; // `write!` into the hasher
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::engine::Engine;

/// Results kept at most: a few knowledge versions and builds side by side.
const KEPT: usize = 8;
const SUBDIR: &str = "self-tests";

/// A self-test's failures (empty when sound) and whether they were reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub failures: Vec<String>,
    pub reused: bool,
}

/// Runs the self-test in full and keeps its result for later runs.
pub fn run(engine: &Engine) -> Vec<String> {
    run_and_keep(engine, result_path(engine).as_deref())
}

/// The kept result for exactly this engine when there is one, else a full run.
pub fn reuse_or_run(engine: &Engine) -> Outcome {
    let path = result_path(engine);
    if let Some(failures) = path.as_deref().and_then(read) {
        return Outcome { failures, reused: true };
    }
    Outcome { failures: run_and_keep(engine, path.as_deref()), reused: false }
}

fn run_and_keep(engine: &Engine, path: Option<&Path>) -> Vec<String> {
    let failures = crate::responder::self_test(engine);
    if let Some(path) = path
        && let Err(err) = keep(path, &failures)
    {
        // The result is in hand; not keeping it costs the next reload time.
        tracing::warn!("could not keep the self-test result in {}: {err:#}", path.display());
    }
    failures
}

/// Where the result for this engine is kept, when it can be kept.
fn result_path(engine: &Engine) -> Option<PathBuf> {
    let (semantic, _) = engine.semantic.as_ref()?;
    let dir = semantic.cache_dir()?;
    let key = key(engine, &program_identity()?);
    Some(dir.join(SUBDIR).join(format!("{}.json", crate::text::hex(&key))))
}

/// The running executable's path, size and modification time: a rebuilt
/// program (other code, other thresholds) is another program.
fn program_identity() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!("{}\0{}\0{}", exe.display(), meta.len(), modified.as_nanos()))
}

/// A hash of everything the self-test's result depends on. The knowledge
/// base is hashed through its `Debug` form, which holds every field in a
/// fixed order (no maps), streamed so a large one is never one string.
fn key(engine: &Engine, program: &str) -> [u8; 32] {
    struct Hashing(Sha256);
    impl std::fmt::Write for Hashing {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            self.0.update(text.as_bytes());
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    hashing.0.update(b"faqbot self-test 1\0");
    hashing.0.update(program.as_bytes());
    hashing.0.update(b"\0");
    hashing.0.update(crate::model::WEIGHTS_SHA256.as_bytes());
    hashing.0.update(b"\0");
    // Writing to a hasher cannot fail.
    let _ = write!(hashing, "{:?}", engine.kb);
    hashing.0.finalize().into()
}

/// A kept result, if there is a readable one.
fn read(path: &Path) -> Option<Vec<String>> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the result atomically, then leaves only the `KEPT` newest.
fn keep(path: &Path, failures: &[String]) -> anyhow::Result<()> {
    let dir = path.parent().context("a result path has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
    serde_json::to_writer(&mut file, failures).context("writing the result")?;
    file.persist(path).with_context(|| format!("writing {}", path.display()))?;
    let mut kept: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|item| item.path().extension().is_some_and(|extension| extension == "json"))
        .filter_map(|item| Some((item.metadata().ok()?.modified().ok()?, item.path())))
        .collect();
    kept.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, old) in kept.iter().skip(KEPT) {
        // Another process may have removed it first; either way it is gone.
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}
