//! The index's vocabulary: term ids, document frequencies and weights, and a
//! deletion index over the words as written, for typo repair (SymSpell).

use std::collections::HashMap;

/// Words shorter than this are never spelling-corrected: too many near
/// misses ("horse" is one edit from "hours").
pub(super) const MIN_TYPO_LEN: usize = 6;

/// Term ids, document frequencies and a deletion index for typo repair.
#[derive(Default)]
pub(super) struct Vocabulary {
    pub(super) ids: HashMap<String, u32>,
    pub(super) terms: Vec<String>,
    /// In how many entries each term occurs (any field).
    pub(super) df: Vec<u32>,
    /// Each term's weight (bounded inverse document frequency), filled once
    /// the document frequencies are known.
    pub(super) weight: Vec<f32>,
    /// Every word as written in the knowledge base, to its stem's id: typos
    /// are repaired on words, since stemming a typo gives an unrelated stem.
    pub(super) surface: HashMap<String, u32>,
    /// Each long surface word and each of its one-character deletions, to
    /// the stems they come from: two words within one edit, or one
    /// transposition, share a key (SymSpell).
    pub(super) deletions: HashMap<String, Vec<u32>>,
}

impl Vocabulary {
    pub(super) fn intern(&mut self, term: &str) -> u32 {
        if let Some(id) = self.ids.get(term) {
            return *id;
        }
        let id = self.terms.len() as u32;
        self.ids.insert(term.to_owned(), id);
        self.terms.push(term.to_owned());
        self.df.push(0);
        id
    }

    pub(super) fn add_surface(&mut self, word: &str, id: u32) {
        self.surface.entry(word.to_owned()).or_insert(id);
    }

    pub(super) fn build_deletions(&mut self) {
        for (word, id) in &self.surface {
            if word.chars().count() < MIN_TYPO_LEN || !word.chars().all(char::is_alphabetic) {
                continue;
            }
            for key in deletion_keys(word) {
                let ids = self.deletions.entry(key).or_default();
                if !ids.contains(id) {
                    ids.push(*id);
                }
            }
        }
    }

    /// The stem of the known word within about one edit of `word`,
    /// preferring the most common; `None` when there is none.
    pub(super) fn correct(&self, word: &str) -> Option<u32> {
        if word.chars().count() < MIN_TYPO_LEN || !word.chars().all(char::is_alphabetic) {
            return None;
        }
        let mut best: Option<u32> = None;
        for key in deletion_keys(word) {
            for &candidate in self.deletions.get(&key).into_iter().flatten() {
                if best.is_none_or(|b| self.df[candidate as usize] > self.df[b as usize]) {
                    best = Some(candidate);
                }
            }
        }
        best
    }
}

fn deletion_keys(term: &str) -> Vec<String> {
    let chars: Vec<char> = term.chars().collect();
    let mut keys = Vec::with_capacity(chars.len() + 1);
    keys.push(term.to_owned());
    for skip in 0..chars.len() {
        keys.push(chars.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, c)| c).collect());
    }
    keys
}
