//! Meaning-based retrieval: every phrasing (question and alternates) of every
//! entry as a sentence vector, searched by brute-force cosine. At a few
//! thousand phrasings a scan costs well under a millisecond (see
//! BENCHMARKS.md), so no approximate index is needed.

use crate::knowledge::KnowledgeBase;
use crate::model::{DIMENSIONS, Semantic, cosines};

/// The phrasing vectors of one knowledge base. Immutable once built.
pub struct Dense {
    /// Row-major: phrasing `i` is `vectors[i * DIMENSIONS..(i + 1) * DIMENSIONS]`.
    vectors: Vec<f32>,
    /// The entry each phrasing belongs to.
    owners: Vec<usize>,
    entries: usize,
    /// Phrasings embedded by this build (the rest came from the cache).
    pub embedded: usize,
}

/// An entry's closeness in meaning to a question.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Closeness {
    /// Index into `KnowledgeBase::entries`.
    pub entry: usize,
    /// The best cosine between any of the question's vectors and any of the
    /// entry's phrasings.
    pub cosine: f32,
    /// The mean of its three closest phrasings' cosines (fewer if it has fewer):
    /// steadier than the single best.
    pub mean3: f32,
}

impl Dense {
    /// Embeds (or takes from the cache) every phrasing of `kb`.
    pub fn build(kb: &KnowledgeBase, semantic: &Semantic) -> anyhow::Result<Self> {
        let mut texts = Vec::new();
        let mut owners = Vec::new();
        for (index, entry) in kb.entries.iter().enumerate() {
            for phrasing in entry.phrasings() {
                texts.push(phrasing);
                owners.push(index);
            }
        }
        let (vectors, embedded) = semantic.embed_all(&texts)?;
        let mut flat = Vec::with_capacity(vectors.len() * DIMENSIONS);
        for vector in &vectors {
            flat.extend_from_slice(vector);
        }
        Ok(Self { vectors: flat, owners, entries: kb.entries.len(), embedded })
    }

    /// Every phrasing's vector, row-major: what a question is scanned against.
    pub fn rows(&self) -> &[f32] {
        &self.vectors
    }

    /// Every entry's closeness to one query vector, by entry index.
    pub fn closeness(&self, query: &[f32]) -> Vec<Closeness> {
        self.closeness_of(&cosines(query, &self.vectors))
    }

    /// Every entry's closeness, from a query's cosine with each phrasing
    /// (`rows` order).
    pub fn closeness_of(&self, scanned: &[f32]) -> Vec<Closeness> {
        let mut best: Vec<Closeness> =
            (0..self.entries).map(|entry| Closeness { entry, cosine: f32::MIN, mean3: 0.0 }).collect();
        let mut top3 = vec![[f32::MIN; 3]; self.entries];
        for (&score, &owner) in scanned.iter().zip(&self.owners) {
            if let Some(top) = top3.get_mut(owner)
                && score > top[2]
            {
                top[2] = score;
                top.sort_by(|a, b| b.total_cmp(a));
            }
            if let Some(closeness) = best.get_mut(owner)
                && score > closeness.cosine
            {
                closeness.cosine = score;
            }
        }
        for (closeness, top) in best.iter_mut().zip(&top3) {
            let kept: Vec<f32> = top.iter().copied().filter(|score| *score > f32::MIN).collect();
            closeness.mean3 = kept.iter().sum::<f32>() / kept.len().max(1) as f32;
        }
        best
    }
}
