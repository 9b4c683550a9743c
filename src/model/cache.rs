//! Sentence vectors kept between builds, so a reload embeds only the
//! phrasings that changed. Keyed by the model's checksum and the text's
//! SHA-256; held in memory for the process and, when given a directory,
//! appended to a file there (`vectors-<model>.bin`: records of a 32-byte key
//! and 384 little-endian f32s). A damaged or foreign file costs a rebuild of
//! the vectors, never a wrong vector: a short or unreadable tail is ignored.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::{DIMENSIONS, Embedder, Vector};

type Key = [u8; 32];
const RECORD: usize = 32 + DIMENSIONS * 4;

/// Vectors by text for one model. Shareable across threads and engines.
pub struct VectorCache {
    model: String,
    vectors: Mutex<HashMap<Key, Vector>>,
    file: Option<PathBuf>,
}

impl VectorCache {
    /// An empty cache for the model with checksum `model`, kept in memory only.
    pub fn in_memory(model: &str) -> Self {
        Self { model: model.to_owned(), vectors: Mutex::new(HashMap::new()), file: None }
    }

    /// A cache backed by a file in `dir` (created if need be). Reading a
    /// damaged file keeps what could be read.
    pub fn on_disk(model: &str, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the vector cache {}", dir.display()))?;
        let short: String = model.chars().take(16).collect();
        let path = dir.join(format!("vectors-{short}.bin"));
        let mut vectors = HashMap::new();
        match File::open(&path) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
                for record in bytes.chunks_exact(RECORD) {
                    let (key, floats) = record.split_at(32);
                    let mut k = [0u8; 32];
                    k.copy_from_slice(key);
                    let vector: Vector =
                        floats.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                    vectors.insert(k, vector);
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("opening {}", path.display())),
        }
        Ok(Self { model: model.to_owned(), vectors: Mutex::new(vectors), file: Some(path) })
    }

    /// The directory of the cache file; `None` in memory only.
    pub fn dir(&self) -> Option<&Path> {
        self.file.as_deref()?.parent()
    }

    /// How many vectors the cache holds.
    pub fn len(&self) -> usize {
        self.vectors.lock().map_or(0, |vectors| vectors.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(&self, text: &str) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(self.model.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.finalize().into()
    }

    /// The vectors of `texts` in order: cached ones looked up, the rest
    /// embedded in batches and remembered. Returns how many were embedded.
    pub fn embed_all(&self, embedder: &Embedder, texts: &[&str]) -> anyhow::Result<(Vec<Vector>, usize)> {
        self.embed(embedder, texts, Keep::Yes)
    }

    /// The vectors of `texts` in order: cached ones looked up, the rest
    /// embedded and not remembered.
    pub fn embed_unkept(&self, embedder: &Embedder, texts: &[&str]) -> anyhow::Result<Vec<Vector>> {
        Ok(self.embed(embedder, texts, Keep::No)?.0)
    }

    fn embed(&self, embedder: &Embedder, texts: &[&str], keep: Keep) -> anyhow::Result<(Vec<Vector>, usize)> {
        let keys: Vec<Key> = texts.iter().map(|text| self.key(text)).collect();
        let mut out: Vec<Option<Vector>> = {
            let vectors = self.vectors.lock().map_err(|_| anyhow::anyhow!("the vector cache lock is poisoned"))?;
            keys.iter().map(|key| vectors.get(key).cloned()).collect()
        };
        // Each missing text once: a knowledge base may repeat a phrasing
        // (MedQuAD repeats one in ten).
        let mut seen = HashSet::new();
        let missing: Vec<usize> =
            (0..texts.len()).filter(|&index| out[index].is_none() && seen.insert(keys[index])).collect();
        if missing.is_empty() {
            return Ok((out.into_iter().map(Option::unwrap_or_default).collect(), 0));
        }
        let batch: Vec<&str> = missing.iter().map(|&index| texts[index]).collect();
        // A message's texts are few and share a pass with other messages'.
        let vectors = match keep {
            Keep::Yes => embedder.embed_batch(&batch)?,
            Keep::No => embedder.embed_combined(&batch)?,
        };
        let fresh: HashMap<Key, Vector> = missing.iter().map(|&index| keys[index]).zip(vectors).collect();
        for (slot, key) in out.iter_mut().zip(&keys) {
            if slot.is_none() {
                *slot = fresh.get(key).cloned();
            }
        }
        if keep == Keep::Yes {
            let records = missing.iter().filter_map(|&index| Some((&keys[index], fresh.get(&keys[index])?)));
            if let Some(path) = &self.file
                && let Err(err) = append(path, records)
            {
                // The vectors are in memory; a cache file that cannot be
                // written costs time at the next start, not answers.
                tracing::warn!("could not write the vector cache {}: {err:#}", path.display());
            }
            let mut vectors = self.vectors.lock().map_err(|_| anyhow::anyhow!("the vector cache lock is poisoned"))?;
            vectors.extend(fresh);
        }
        Ok((out.into_iter().map(Option::unwrap_or_default).collect(), missing.len()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Yes,
    No,
}

/// Appends records in one write: with `O_APPEND` one write lands whole, so
/// two processes filling the same cache cannot interleave half records.
fn append<'a>(path: &Path, records: impl Iterator<Item = (&'a Key, &'a Vector)>) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    for (key, vector) in records {
        bytes.extend_from_slice(key);
        for value in vector {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(file.write_all(&bytes)?)
}
