//! The hybrid decision: candidates from meaning (phrasing vectors) and from
//! words (Tantivy), a few explainable features for each, and one verdict:
//! answer, clarify or no match. Pure: no I/O; the same code serves replies,
//! `--explain` and `eval`.
//!
//! The features, per candidate entry:
//! - `whole`: the best cosine between the whole message and any of the
//!   entry's phrasings; `sentence`, the same for the message's best single
//!   sentence, which carries the score when it matches better than the
//!   whole (context around a question dilutes the whole message's vector);
//!   `mean3`, the mean of the three closest phrasings (steadier than the
//!   single best);
//! - `gap`: how far the best candidate's score is ahead of the next one;
//! - `coverage`: the weighted share of the message's informative words the
//!   entry contains (the lexical signal: it is what notices an unknown word
//!   such as a drug the knowledge base never mentions);
//! - `exact`: some phrasing says exactly what the message says (it answers
//!   only at a cosine of `EXACT_FLOOR` or more).

use std::collections::HashMap;

use crate::engine::Engine;
use crate::model::Vector;
use crate::question::Scans;
use crate::search::Analysis;

/// The decision's weights and thresholds, fitted jointly on the tune parts
/// of both knowledge bases (tests/data/dev-tune.jsonl and
/// tests/data/kb2/tune.jsonl: the most answered right on average with at
/// most 2 % wrong on each); the held-out parts only report (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hybrid {
    /// What a single sentence's cosine adds to the score.
    pub sentence: f32,
    /// What the mean of the three closest phrasings adds.
    pub mean3: f32,
    /// What lexical coverage adds.
    pub lexical: f32,
    /// The least score for an answer or a choice of entries.
    pub answer: f32,
    /// How far ahead of the runner-up an answer must be; closer, and the
    /// user is offered a choice instead of a guess.
    pub gap: f32,
    /// A score a little under `answer` still answers when it is this far
    /// ahead of every other entry ("will my health plan pay": 1.51, ahead
    /// by 0.58); otherwise it is no match.
    pub lead_answer: f32,
    pub lead_gap: f32,
}

pub const HYBRID: Hybrid =
    Hybrid { sentence: 0.1, mean3: 0.75, lexical: 0.4, answer: 1.54, gap: 0.08, lead_answer: 1.5, lead_gap: 0.25 };

/// An exact lexical match answers only this close in meaning: one common
/// word can be all of a short phrasing ("see you" is every informative word
/// of "who can see my questions", cosine 0.43).
const EXACT_FLOOR: f32 = 0.5;

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
    /// The best cosine of the whole message or any one of its sentences
    /// (equal to `whole` for a single sentence).
    pub sentence: f32,
    /// The mean of the three closest phrasings' cosines with the whole message.
    pub mean3: f32,
    /// Lexical coverage, 0 to 1.
    pub coverage: f32,
    /// BM25 score, when Tantivy returned the entry.
    pub bm25: Option<f32>,
    pub exact: bool,
    /// The ranking score (`Candidate::score`).
    pub score: f32,
}

impl Candidate {
    /// The ranking score: the better of the whole message's and its best
    /// sentence's cosine (on held-out questions this took the right answers
    /// from 0.379 to 0.412 with no more wrong ones), plus shares of the best
    /// sentence's, the three closest phrasings' and coverage.
    pub fn score(&self, weights: &Hybrid) -> f32 {
        self.whole.max(self.sentence)
            + weights.sentence * self.sentence
            + weights.mean3 * self.mean3
            + weights.lexical * self.coverage
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
/// `scans` holds whatever scans were worked out ahead (`question::scan_ahead`).
pub fn candidates(
    engine: &Engine,
    analysis: &Analysis,
    vectors: &[Vector],
    scans: &Scans,
    thresholds: &Hybrid,
) -> Vec<Candidate> {
    let Some((_, dense)) = &engine.semantic else { return Vec::new() };
    let Some((whole, sentences)) = vectors.split_first() else { return Vec::new() };
    let closeness = |vector: &[f32]| dense.closeness_of(&scans.phrasings(vector, dense.rows()));
    let whole = closeness(whole);
    let mut sentence: Vec<f32> = whole.iter().map(|closeness| closeness.cosine).collect();
    for vector in sentences {
        for (best, closeness) in sentence.iter_mut().zip(closeness(vector)) {
            *best = best.max(closeness.cosine);
        }
    }
    let hits = engine.index.search(analysis, LEXICAL_CANDIDATES);
    let lexical: HashMap<usize, (f32, bool)> = hits.iter().map(|hit| (hit.entry, (hit.score, hit.exact))).collect();

    let mut order: Vec<usize> = (0..whole.len()).collect();
    order.sort_by(|&a, &b| {
        let best = |entry: usize| whole[entry].cosine + thresholds.mean3 * whole[entry].mean3;
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
                mean3: closeness.mean3,
                coverage,
                bm25,
                exact,
                score: 0.0,
            };
            candidate.score = candidate.score(thresholds);
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
    if first.exact && first.whole >= EXACT_FLOOR {
        return Verdict::Answer { entry: first.entry, reason: "says exactly what one of its phrasings says" };
    }
    // A phrasing identical in meaning wins wherever it ranks: an entry with
    // one such phrasing can rank below one with many close ones.
    if let Some(same) = candidates.iter().find(|candidate| candidate.whole >= 0.999) {
        return Verdict::Answer { entry: same.entry, reason: "says exactly what one of its phrasings says" };
    }
    let runner_up = candidates.get(1).map_or(f32::MIN, |candidate| candidate.score);
    let lead = first.score - runner_up;
    if first.score < thresholds.answer {
        if first.score >= thresholds.lead_answer && lead >= thresholds.lead_gap {
            return Verdict::Answer {
                entry: first.entry,
                reason: "nearly close enough, and far ahead of every other entry",
            };
        }
        return Verdict::NoMatch { reason: "no entry is close enough in meaning and words" };
    }
    if lead >= thresholds.gap {
        return Verdict::Answer { entry: first.entry, reason: "close in meaning, well ahead of the next entry" };
    }
    let entries = candidates.iter().take(3).map(|candidate| candidate.entry).collect();
    Verdict::Clarify { entries, reason: "several entries are about equally close" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(entry: usize, score: f32) -> Candidate {
        Candidate { entry, whole: 0.6, sentence: 0.6, mean3: 0.5, coverage: 0.5, bm25: None, exact: false, score }
    }

    fn verdict(first: f32, second: f32) -> Verdict {
        decide(&[candidate(0, first), candidate(1, second)], &HYBRID)
    }

    #[test]
    fn a_clear_lead_makes_up_for_a_slightly_lower_score_and_nothing_less_does() {
        let answered = |verdict: Verdict| matches!(verdict, Verdict::Answer { entry: 0, .. });
        // (A thousandth more than each gap: f32 subtraction may round it down.)
        assert!(answered(verdict(HYBRID.answer, HYBRID.answer - HYBRID.gap - 0.001)));
        assert!(answered(verdict(HYBRID.lead_answer, HYBRID.lead_answer - HYBRID.lead_gap - 0.001)));
        // Under `answer`, a lead short of `lead_gap` is no match, not a choice.
        let short = verdict(HYBRID.lead_answer, HYBRID.lead_answer - HYBRID.lead_gap / 2.0);
        assert!(matches!(short, Verdict::NoMatch { .. }), "{short:?}");
        let low = verdict(HYBRID.lead_answer - 0.01, 0.0);
        assert!(matches!(low, Verdict::NoMatch { .. }), "{low:?}");
        // At `answer`, a close runner-up makes a choice.
        let close = verdict(HYBRID.answer, HYBRID.answer - HYBRID.gap / 2.0);
        assert!(matches!(close, Verdict::Clarify { .. }), "{close:?}");
    }

    #[test]
    fn a_phrasing_identical_in_meaning_answers_wherever_it_ranks() {
        let mut same = candidate(1, 1.0);
        same.whole = 1.0;
        let verdict = decide(&[candidate(0, 2.0), same], &HYBRID);
        assert!(matches!(verdict, Verdict::Answer { entry: 1, .. }), "{verdict:?}");
    }
}
