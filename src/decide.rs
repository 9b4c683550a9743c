//! The hybrid decision: candidates from meaning (phrasing vectors) and from
//! words (Tantivy), a few explainable features for each, and one verdict:
//! answer, clarify or no match. Pure: no I/O; the same code serves replies,
//! `--explain` and `eval`.
//!
//! The features, per candidate entry:
//! - `cosine`: the best cosine between the message and any of the entry's
//!   phrasings; for a message of several sentences, a single sentence's
//!   cosine counts too, less a small penalty (context sentences such as "I'm
//!   a vet" must not outweigh the question itself);
//! - `margin`: how far the best candidate's score is ahead of the next one;
//! - `coverage`: the weighted share of the message's informative words the
//!   entry contains (the lexical signal: it is what notices an unknown word
//!   such as a drug the knowledge base never mentions);
//! - `exact`: some phrasing says exactly what the message says.

use std::collections::HashMap;

use crate::engine::Engine;
use crate::model::Vector;
use crate::search::Analysis;

/// The decision's thresholds, tuned on the tune part of the development set
/// only (see ARCHITECTURE.md and BENCHMARKS.md for the figures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hybrid {
    /// How much lexical coverage adds to the cosine when ranking.
    pub lexical: f32,
    /// What a sentence's cosine loses against the whole message's.
    pub sentence_penalty: f32,
    /// A score at least this high answers on meaning alone.
    pub answer: f32,
    /// Below this score nothing is answered.
    pub floor: f32,
    /// Between `floor` and `answer`, coverage at least this high answers.
    pub coverage: f32,
    /// A runner-up within this much of the best makes a clarification.
    pub margin: f32,
}

pub const HYBRID: Hybrid =
    Hybrid { lexical: 0.25, sentence_penalty: 0.05, answer: 0.80, floor: 0.55, coverage: 0.6, margin: 0.02 };

/// Dense candidates kept per message, before the lexical ones are added.
const DENSE_CANDIDATES: usize = 12;
/// Lexical (BM25) candidates kept per message.
const LEXICAL_CANDIDATES: usize = 5;

/// One candidate entry and its features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index into `KnowledgeBase::entries`.
    pub entry: usize,
    /// Cosine of the whole message with the entry's closest phrasing.
    pub whole: f32,
    /// The best single sentence's cosine (equal to `whole` for one sentence).
    pub sentence: f32,
    /// Which phrasing was closest (0 = the entry's question).
    pub phrasing: usize,
    /// The mean of the three closest phrasings' cosines with the whole message.
    pub mean3: f32,
    /// The best cosine of the whole message with one of the answer's paragraphs.
    pub answer: f32,
    /// Lexical coverage, 0 to 1.
    pub coverage: f32,
    /// BM25 score, when Tantivy returned the entry.
    pub bm25: Option<f32>,
    pub exact: bool,
    /// The ranking score: best cosine plus a share of coverage.
    pub score: f32,
}

impl Candidate {
    /// The cosine the decision uses.
    pub fn cosine(&self, thresholds: &Hybrid) -> f32 {
        self.whole.max(self.sentence - thresholds.sentence_penalty)
    }
}

/// What the decision says, with its reason for `--explain`.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Answer { entry: usize, reason: &'static str },
    Clarify { entries: Vec<usize>, reason: &'static str },
    NoMatch { reason: &'static str },
}

/// The candidates for a message: dense top-k ∪ Tantivy top-k, each with its
/// features, best first. `vectors` holds the whole message's vector, then
/// each sentence's.
pub fn candidates(engine: &Engine, analysis: &Analysis, vectors: &[Vector], thresholds: &Hybrid) -> Vec<Candidate> {
    let Some((_, dense)) = &engine.semantic else { return Vec::new() };
    let Some((whole, sentences)) = vectors.split_first() else { return Vec::new() };
    let whole = dense.closeness(whole);
    let mut sentence: Vec<f32> = whole.iter().map(|closeness| closeness.cosine).collect();
    for vector in sentences {
        for (best, closeness) in sentence.iter_mut().zip(dense.closeness(vector)) {
            *best = best.max(closeness.cosine);
        }
    }
    let hits = engine.index.search(analysis, LEXICAL_CANDIDATES);
    let lexical: HashMap<usize, (f32, bool)> = hits.iter().map(|hit| (hit.entry, (hit.score, hit.exact))).collect();

    let mut order: Vec<usize> = (0..whole.len()).collect();
    order.sort_by(|&a, &b| {
        let best = |entry: usize| whole[entry].cosine.max(sentence[entry] - thresholds.sentence_penalty);
        best(b).total_cmp(&best(a))
    });
    order.truncate(DENSE_CANDIDATES);
    for hit in &hits {
        if !order.contains(&hit.entry) {
            order.push(hit.entry);
        }
    }
    let total = analysis.total_weight();
    let mut out: Vec<Candidate> = order
        .into_iter()
        .filter_map(|entry| {
            let closeness = whole.get(entry)?;
            let (bm25, exact) = match lexical.get(&entry) {
                Some(&(score, exact)) => (Some(score), exact),
                None => (None, false),
            };
            let coverage = engine.index.coverage(analysis, entry, total);
            let mut candidate = Candidate {
                entry,
                whole: closeness.cosine,
                sentence: *sentence.get(entry)?,
                phrasing: closeness.phrasing,
                mean3: closeness.mean3,
                answer: closeness.answer,
                coverage,
                bm25,
                exact,
                score: 0.0,
            };
            candidate.score = candidate.cosine(thresholds) + thresholds.lexical * coverage;
            Some(candidate)
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Answer, clarify or no match from ranked candidates.
pub fn decide(candidates: &[Candidate], thresholds: &Hybrid) -> Verdict {
    let Some(first) = candidates.first() else {
        return Verdict::NoMatch { reason: "no candidates" };
    };
    if first.exact || first.whole >= 0.999 {
        return Verdict::Answer { entry: first.entry, reason: "says exactly what one of its phrasings says" };
    }
    let score = first.score;
    let reason = if score >= thresholds.answer {
        "close in meaning"
    } else if score >= thresholds.floor && first.coverage >= thresholds.coverage {
        "fairly close in meaning, and most of its words match"
    } else if score < thresholds.floor {
        return Verdict::NoMatch { reason: "nothing close enough in meaning" };
    } else {
        return Verdict::NoMatch { reason: "not close enough in meaning, and too few of its words match" };
    };
    let rivals: Vec<usize> = candidates[1..]
        .iter()
        .filter(|candidate| candidate.score >= score - thresholds.margin)
        .take(2)
        .map(|candidate| candidate.entry)
        .collect();
    if rivals.is_empty() {
        return Verdict::Answer { entry: first.entry, reason };
    }
    let mut entries = vec![first.entry];
    entries.extend(rivals);
    Verdict::Clarify { entries, reason: "several entries are about equally close" }
}
