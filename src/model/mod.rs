//! The sentence-embedding model: loading and running it (`embed`) and the
//! vectors kept between builds (`cache`). Where its files come from and how
//! they are checked is `fetch`'s job.

mod cache;
mod combine;
mod embed;
pub mod fetch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cache::VectorCache;
pub use embed::{DIMENSIONS, Embedder, MAX_TOKENS, Vector, cosine, cosines, cosines_many};

/// The SHA-256 of the model's weights: vectors cached under another model's
/// checksum are never used.
pub const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// The loaded model and its vector cache: what an engine needs to read
/// meaning. Cheap to clone; a reload reuses the running engine's.
#[derive(Clone)]
pub struct Semantic {
    embedder: Arc<Embedder>,
    cache: Arc<VectorCache>,
    dir: PathBuf,
}

impl Semantic {
    /// Loads the model in `dir`; vectors are cached in `cache_dir` when
    /// given, else in memory only.
    pub fn load(dir: &Path, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let embedder = Embedder::load(dir)?;
        let cache = match cache_dir {
            Some(cache_dir) => VectorCache::on_disk(WEIGHTS_SHA256, cache_dir)?,
            None => VectorCache::in_memory(WEIGHTS_SHA256),
        };
        Ok(Self { embedder: Arc::new(embedder), cache: Arc::new(cache), dir: dir.to_path_buf() })
    }

    /// The directory vectors (and self-test results) are kept in, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.dir()
    }

    /// Where the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Vectors of many texts through the cache; also returns how many had
    /// to be embedded.
    pub fn embed_all(&self, texts: &[&str]) -> anyhow::Result<(Vec<Vector>, usize)> {
        self.cache.embed_all(&self.embedder, texts)
    }

    /// Vectors of a message's texts. A text the cache holds (a message that
    /// is one of the phrasings, as every one is in the self-test of a reload)
    /// takes its vector from there; the rest are embedded and not kept:
    /// messages rarely repeat, and they are users' words.
    pub fn embed_batch(&self, texts: &[&str]) -> anyhow::Result<Vec<Vector>> {
        self.cache.embed_unkept(&self.embedder, texts)
    }
}
