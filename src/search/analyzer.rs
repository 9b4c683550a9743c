//! Text to terms: normalised words, stop words dropped, snowball stems, and
//! which words are everyday ones. Used alike for indexing and for questions.

use std::collections::HashSet;

use crate::text::normalize;

/// Everyday verbs, adjectives and adverbs. They weigh at most
/// `GENERAL_WEIGHT`: unlike a noun ("colonoscopy"), they rarely name what a
/// question is about, however rare they are in the knowledge base.
const GENERAL_WORDS: &str = include_str!("general-words.txt");

/// Words that carry no meaning for matching: function words, question words,
/// and the filler people wrap questions in ("I was wondering if...").
const STOP_WORDS: &str = include_str!("stop-words.txt");

/// The words of a word-list file: one per line, `#` starts a comment line.
fn word_list(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// Turns text into stemmed terms. Cheap to create; holds no state but the stemmer.
pub struct Analyzer {
    stemmer: frostem::Stemmer,
    stop: HashSet<&'static str>,
    /// Stems of `GENERAL_WORDS`, so "checked" counts like "check".
    general: HashSet<String>,
}

/// One normalised word of a question.
#[derive(Debug, Clone)]
pub struct Word {
    pub text: String,
    pub stem: String,
    pub stop: bool,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self {
            stemmer: frostem::Stemmer::new(frostem::Algorithm::English),
            stop: word_list(STOP_WORDS).collect(),
            general: HashSet::new(),
        }
        .with_general_stems()
    }
}

impl Analyzer {
    fn with_general_stems(mut self) -> Self {
        self.general = word_list(GENERAL_WORDS).map(|word| self.stem(word)).collect();
        self
    }

    /// Whether a word is an everyday one (see `GENERAL_WORDS`).
    pub(super) fn is_general(&self, word: &Word) -> bool {
        self.general.contains(&word.stem)
    }

    pub fn words(&self, text: &str) -> Vec<Word> {
        normalize(text)
            .split(' ')
            .filter(|word| !word.is_empty())
            .map(|word| Word { stem: self.stem(word), stop: self.stop.contains(word), text: word.to_owned() })
            .collect()
    }

    pub fn stem(&self, word: &str) -> String {
        self.stemmer.stem(word).into_owned()
    }

    /// The stems of the informative words of `text`: what gets indexed.
    pub fn terms(&self, text: &str) -> Vec<String> {
        self.words(text).into_iter().filter(|word| !word.stop).map(|word| word.stem).collect()
    }
}
