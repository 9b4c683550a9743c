//! A message made ready once for everything that reads it: markup stripped,
//! bounded for retrieval but kept whole for the safety screen, normalised,
//! split into sentences, and embedded in one batch. The screen, retrieval,
//! `--explain` and `eval` all read the same `Question`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::model::{DIMENSIONS, Semantic, Vector, cosines, cosines_many};
use crate::text::normalize;

/// Messages longer than this are cut before retrieval; Telegram allows 4096.
pub const MAX_QUESTION_CHARS: usize = 4096;
/// At most this many sentences count for retrieval (the screen reads all).
const MAX_RETRIEVAL_SENTENCES: usize = 8;
/// The screen embeds a long sentence in windows of this many words, so
/// nothing is lost to the model's token limit.
const WINDOW_WORDS: usize = 40;
/// Earlier messages of a chat the screen reads with the new one.
pub const CONTEXT_MESSAGES: usize = 3;
/// Each earlier message, and the new one, counts this much in the joined text.
const CONTEXT_CHARS: usize = 400;

/// One message, analysed.
pub struct Question {
    /// Markup stripped, whole: what the safety screen reads.
    pub full: String,
    /// `full` cut to `MAX_QUESTION_CHARS`: what retrieval reads.
    pub text: String,
    pub normalised: String,
    /// Every sentence of `full` (long ones in windows), for the screen.
    pub sentences: Vec<String>,
    /// The chat's last `CONTEXT_MESSAGES` earlier messages, oldest first,
    /// markup stripped.
    pub context: Vec<String>,
    /// Earlier messages of the same chat, oldest first, joined with this one;
    /// `None` without context.
    pub joined: Option<String>,
    /// The sentences of the earlier messages.
    pub context_sentences: Vec<String>,
    /// The vectors, when the model is loaded and worked.
    pub vectors: Option<Vectors>,
    /// Scans worked out ahead for a block of questions (`scan_ahead`);
    /// empty for a single message, which scans as it goes.
    pub scans: Scans,
}

/// Vectors already worked out, by text: a chat keeps each message's sentence
/// vectors with it, so that as context for the next messages it is not
/// embedded again (the same text gives bit for bit the same vector).
pub type Known = HashMap<String, Vector>;

/// A question's sentence vectors.
pub struct Vectors {
    /// Of `Question::text`.
    pub whole: Vector,
    /// Of each of `retrieval_sentences(text)`, in order.
    pub retrieval: Vec<Vector>,
    /// Of each of `Question::sentences`, in order.
    pub sentences: Vec<Vector>,
    /// Of `Question::joined`.
    pub joined: Option<Vector>,
    /// Of each of `Question::context_sentences`.
    pub context: Vec<Vector>,
}

impl Question {
    /// Prepares `raw` (with the chat's earlier messages, oldest first) and,
    /// given the model, embeds every text it needs in one batch.
    pub fn new(raw: &str, context: &[String], semantic: Option<&Semantic>) -> Question {
        Question::with_known(raw, context, semantic, &Known::new())
    }

    /// `new`, embedding only the texts `known` has no vector for.
    pub fn with_known(raw: &str, context: &[String], semantic: Option<&Semantic>, known: &Known) -> Question {
        let full = crate::text::strip_markup(raw).into_owned();
        let text = bounded(&full, MAX_QUESTION_CHARS).to_owned();
        let normalised = normalize(&text);
        let sentences = screen_sentences(&full);
        let context: Vec<String> = context
            .iter()
            .rev()
            .take(CONTEXT_MESSAGES)
            .rev()
            .map(|earlier| crate::text::strip_markup(earlier).into_owned())
            .filter(|earlier| !earlier.trim().is_empty())
            .collect();
        let joined = (!context.is_empty()).then(|| {
            let mut parts: Vec<&str> = context.iter().map(|earlier| bounded(earlier, CONTEXT_CHARS).trim()).collect();
            parts.push(bounded(&full, CONTEXT_CHARS).trim());
            parts.join("\n")
        });
        let context_sentences = context.iter().flat_map(|earlier| screen_sentences(earlier)).collect();
        let mut question = Question {
            full,
            text,
            normalised,
            sentences,
            context,
            joined,
            context_sentences,
            vectors: None,
            scans: Scans::default(),
        };
        if let Some(semantic) = semantic {
            match question.embed(semantic, known) {
                Ok(vectors) => question.vectors = Some(vectors),
                Err(err) => tracing::warn!("could not embed a message: {err:#}"),
            }
        }
        question
    }

    /// The sentences retrieval embeds on their own: each of two words or
    /// more, at most `MAX_RETRIEVAL_SENTENCES`; none for a single sentence.
    pub fn retrieval_sentences(&self) -> Vec<&str> {
        let parts: Vec<&str> = self
            .text
            .split_inclusive(['.', '!', '?', '\n'])
            .map(str::trim)
            .filter(|part| part.split_whitespace().count() >= 2)
            .collect();
        if parts.len() < 2 { Vec::new() } else { parts.into_iter().take(MAX_RETRIEVAL_SENTENCES).collect() }
    }

    /// Every distinct text `new` embeds for this question, given the model.
    pub fn texts_to_embed(&self) -> Vec<&str> {
        let mut batch = Batch::default();
        batch.add(&self.text);
        for text in self.retrieval_sentences().into_iter().chain(self.sentences.iter().map(String::as_str)) {
            batch.add(text);
        }
        for text in self.joined.iter().chain(&self.context_sentences) {
            batch.add(text);
        }
        batch.order
    }

    /// This message's sentence vectors, to keep while it is context.
    pub fn sentence_vectors(&self) -> Known {
        let Some(vectors) = &self.vectors else { return Known::new() };
        self.sentences.iter().cloned().zip(vectors.sentences.iter().cloned()).collect()
    }

    fn embed(&self, semantic: &Semantic, known: &Known) -> anyhow::Result<Vectors> {
        // Each distinct text once: a single-sentence message is one vector.
        let texts = self.texts_to_embed();
        let missing: Vec<&str> = texts.iter().copied().filter(|text| !known.contains_key(*text)).collect();
        let vectors = embed_in_batches(semantic, &missing)?;
        let mut by_text: HashMap<&str, &Vector> = texts
            .iter()
            .filter_map(|text| known.get_key_value(*text))
            .map(|(text, vector)| (text.as_str(), vector))
            .collect();
        by_text.extend(missing.iter().copied().zip(&vectors));
        let get = |text: &str| by_text.get(text).map(|vector| (*vector).clone()).unwrap_or_default();
        Ok(Vectors {
            whole: get(&self.text),
            retrieval: self.retrieval_sentences().into_iter().map(get).collect(),
            sentences: self.sentences.iter().map(|text| get(text)).collect(),
            joined: self.joined.as_deref().map(get),
            context: self.context_sentences.iter().map(|text| get(text)).collect(),
        })
    }
}

impl Vectors {
    /// Every vector, once each.
    fn distinct(&self) -> Vec<&Vector> {
        let mut out: Vec<&Vector> = Vec::new();
        let all = std::iter::once(&self.whole)
            .chain(&self.retrieval)
            .chain(&self.sentences)
            .chain(&self.joined)
            .chain(&self.context);
        for vector in all {
            if !out.contains(&vector) {
                out.push(vector);
            }
        }
        out
    }
}

/// A question's vectors' cosines with the phrasings and with the screen's
/// examples, worked out ahead; each row is found by its vector.
#[derive(Debug, Default, Clone)]
pub struct Scans {
    phrasings: Vec<(Vector, Arc<Vec<f32>>)>,
    examples: Vec<(Vector, Arc<Vec<f32>>)>,
}

impl Scans {
    /// `vector`'s cosine with each of the phrasing vectors `rows`.
    pub fn phrasings<'a>(&'a self, vector: &[f32], rows: &[f32]) -> Cow<'a, [f32]> {
        lookup(&self.phrasings, vector, rows)
    }

    /// `vector`'s cosine with each of the screen's example vectors `rows`.
    pub fn examples<'a>(&'a self, vector: &[f32], rows: &[f32]) -> Cow<'a, [f32]> {
        lookup(&self.examples, vector, rows)
    }
}

/// The row worked out ahead for `vector`, or a scan now: a vector never
/// worked out, or worked out against other rows, is scanned.
fn lookup<'a>(ahead: &'a [(Vector, Arc<Vec<f32>>)], vector: &[f32], rows: &[f32]) -> Cow<'a, [f32]> {
    match ahead.iter().find(|(key, row)| key.as_slice() == vector && row.len() * DIMENSIONS == rows.len()) {
        Some((_, row)) => Cow::Borrowed(row),
        None => Cow::Owned(cosines(vector, rows)),
    }
}

/// Works out the scans of a block of questions at once: each pass over the
/// phrasing and example vectors serves every question of the block, where
/// one question at a time would read them all again for each (the self-test
/// of a reload asks thousands). Each row is bit for bit what the question
/// would have scanned itself.
pub fn scan_ahead(questions: &mut [Question], phrasings: &[f32], examples: Option<&[f32]>) {
    let mut distinct: Vec<&Vector> = Vec::new();
    for vectors in questions.iter().filter_map(|question| question.vectors.as_ref()) {
        for vector in vectors.distinct() {
            if !distinct.contains(&vector) {
                distinct.push(vector);
            }
        }
    }
    let queries: Vec<&[f32]> = distinct.iter().map(|vector| vector.as_slice()).collect();
    let rows_of = |rows: &[f32]| -> Vec<(Vector, Arc<Vec<f32>>)> {
        distinct
            .iter()
            .map(|vector| (*vector).clone())
            .zip(cosines_many(&queries, rows).into_iter().map(Arc::new))
            .collect()
    };
    let phrasings = rows_of(phrasings);
    let examples = examples.map(rows_of).unwrap_or_default();
    for question in questions {
        let Some(vectors) = &question.vectors else { continue };
        let mine = vectors.distinct();
        let pick = |all: &[(Vector, Arc<Vec<f32>>)]| -> Vec<(Vector, Arc<Vec<f32>>)> {
            all.iter().filter(|(vector, _)| mine.contains(&vector)).cloned().collect()
        };
        question.scans = Scans { phrasings: pick(&phrasings), examples: pick(&examples) };
    }
}

/// Distinct texts to embed, in the order first met.
#[derive(Default)]
struct Batch<'a> {
    order: Vec<&'a str>,
    seen: HashSet<&'a str>,
}

impl<'a> Batch<'a> {
    fn add(&mut self, text: &'a str) {
        if self.seen.insert(text) {
            self.order.push(text);
        }
    }
}

/// Embeds in batches of similar length: one very long batch would pad every
/// short sentence to the longest.
fn embed_in_batches(semantic: &Semantic, texts: &[&str]) -> anyhow::Result<Vec<Vector>> {
    const BATCH: usize = 32;
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(BATCH) {
        out.extend(semantic.embed_batch(chunk)?);
    }
    Ok(out)
}

/// The first `limit` characters of `text`.
pub fn bounded(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Sentence-like parts: split after `.`, `!`, `?`, `;` and line breaks, trimmed, empty ones dropped.
fn split(text: &str) -> Vec<&str> {
    text.split_inclusive(['.', '!', '?', ';', '\n']).map(str::trim).filter(|part| !part.is_empty()).collect()
}

/// Every sentence of `text`, long ones as overlapping windows of words.
fn screen_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in split(text) {
        let words: Vec<&str> = part.split_whitespace().collect();
        if words.len() <= WINDOW_WORDS {
            out.push(part.to_owned());
            continue;
        }
        let step = WINDOW_WORDS / 2;
        let mut start = 0;
        while start < words.len() {
            let end = (start + WINDOW_WORDS).min(words.len());
            out.push(words[start..end].join(" "));
            if end == words.len() {
                break;
            }
            start += step;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_cover_the_whole_text_and_long_ones_come_in_windows() {
        let long = "word ".repeat(100);
        let question = Question::new(&format!("First one. {long}\nlast? yes"), &[], None);
        assert_eq!(question.sentences.first().map(String::as_str), Some("First one."));
        assert_eq!(question.sentences.last().map(String::as_str), Some("yes"));
        // 100 words in windows of 40, moving by 20: 0-40, 20-60, 40-80, 60-100.
        assert_eq!(question.sentences.len(), 1 + 4 + 2);
        assert!(question.sentences.iter().all(|sentence| sentence.split_whitespace().count() <= WINDOW_WORDS));
    }

    #[test]
    fn context_keeps_the_last_messages_and_joins_them_with_this_one() {
        let context: Vec<String> = ["one", "two", "three", "four"].map(String::from).to_vec();
        let question = Question::new("five", &context, None);
        assert_eq!(question.joined.as_deref(), Some("two\nthree\nfour\nfive"));
        assert_eq!(Question::new("five", &[], None).joined, None);
    }

    #[test]
    fn every_text_is_embedded_once_whatever_role_it_plays() {
        let context = ["I have been worried.".to_owned()];
        let question = Question::new("Is it safe? My sister starts soon.", &context, None);
        let texts = question.texts_to_embed();
        // The whole, its two sentences (for retrieval and for the screen,
        // the same texts), the joined context and the earlier sentence.
        assert_eq!(
            texts,
            [
                "Is it safe? My sister starts soon.",
                "Is it safe?",
                "My sister starts soon.",
                "I have been worried.\nIs it safe? My sister starts soon.",
                "I have been worried.",
            ]
        );
        assert_eq!(Question::new("what is ketamine", &[], None).texts_to_embed(), ["what is ketamine"]);
    }

    #[test]
    fn scans_worked_out_ahead_are_what_a_question_would_scan_itself() {
        let vector =
            |seed: usize| -> Vector { (0..DIMENSIONS).map(|i| ((seed * 31 + i) as f32 * 0.13).sin()).collect() };
        let phrasings: Vec<f32> = (0..5).flat_map(vector).collect();
        let examples: Vec<f32> = (10..13).flat_map(vector).collect();
        let mut questions: Vec<Question> = (0..2)
            .map(|seed| {
                let mut question = Question::new("two words. and more", &[], None);
                question.vectors = Some(Vectors {
                    whole: vector(20 + seed),
                    retrieval: vec![vector(30 + seed), vector(40)],
                    sentences: vec![vector(30 + seed), vector(40)],
                    joined: None,
                    context: Vec::new(),
                });
                question
            })
            .collect();
        scan_ahead(&mut questions, &phrasings, Some(&examples));
        let bits = |row: &[f32]| row.iter().map(|value| value.to_bits()).collect::<Vec<_>>();
        for (seed, question) in questions.iter().enumerate() {
            for own in [vector(20 + seed), vector(30 + seed), vector(40)] {
                let ahead = question.scans.phrasings(&own, &phrasings);
                assert!(matches!(ahead, Cow::Borrowed(_)), "worked out ahead");
                assert_eq!(bits(&ahead), bits(&cosines(&own, &phrasings)));
                assert_eq!(bits(&question.scans.examples(&own, &examples)), bits(&cosines(&own, &examples)));
            }
            // Another question's vector, or other rows, are scanned on the spot.
            let other = vector(21 - seed);
            assert!(matches!(question.scans.phrasings(&other, &phrasings), Cow::Owned(_)));
            let fewer = phrasings.get(..DIMENSIONS).unwrap_or_default();
            assert_eq!(question.scans.phrasings(&vector(40), fewer).len(), 1);
        }
    }

    #[test]
    fn retrieval_reads_at_most_the_bounded_text() {
        let question = Question::new(&"a".repeat(MAX_QUESTION_CHARS + 10), &[], None);
        assert_eq!(question.text.chars().count(), MAX_QUESTION_CHARS);
        assert_eq!(question.full.chars().count(), MAX_QUESTION_CHARS + 10);
    }
}
