//! The last few messages of each conversation, in memory only and never
//! stored, so the safety screen sees danger built across messages ("I can't
//! do this anymore" … "how many would it take"). Lost on restart, on purpose.
//! Each message keeps its sentence vectors too, so that as context it is not
//! embedded again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::question::Known;

/// Messages kept per conversation.
const KEEP: usize = crate::question::CONTEXT_MESSAGES;
/// Older messages no longer count as context.
const FOR: Duration = Duration::from_secs(30 * 60);
/// Each kept message is cut to this many characters.
const MAX_CHARS: usize = 1000;
/// Past this many conversations, the quiet ones are forgotten.
const MAX_CONVERSATIONS: usize = 10_000;
/// Past this many kept vectors (1.5 KiB each), all are dropped: they only
/// save work, and the texts stay.
const MAX_VECTORS: usize = 16_384;

/// A conversation: one person in one chat.
pub(crate) type Key = (i64, u64);

struct Message {
    at: Instant,
    text: String,
    vectors: Known,
}

#[derive(Default)]
pub(crate) struct Recent {
    conversations: HashMap<Key, VecDeque<Message>>,
    vectors: usize,
}

impl Recent {
    /// The conversation's recent messages, oldest first, and the vectors
    /// kept for their sentences.
    pub(crate) fn context(&mut self, key: Key, now: Instant) -> (Vec<String>, Known) {
        let Some(messages) = self.conversations.get_mut(&key) else { return (Vec::new(), Known::new()) };
        let mut dropped = 0;
        messages.retain(|message| {
            let keep = now.saturating_duration_since(message.at) < FOR;
            if !keep {
                dropped += message.vectors.len();
            }
            keep
        });
        self.vectors = self.vectors.saturating_sub(dropped);
        let texts = messages.iter().map(|message| message.text.clone()).collect();
        let known = messages.iter().flat_map(|message| message.vectors.clone()).collect();
        (texts, known)
    }

    /// Remembers `text` as the conversation's latest message.
    pub(crate) fn push(&mut self, key: Key, text: &str, now: Instant) {
        if self.conversations.len() >= MAX_CONVERSATIONS && !self.conversations.contains_key(&key) {
            self.conversations.retain(|_, messages| {
                messages.back().is_some_and(|message| now.saturating_duration_since(message.at) < FOR)
            });
            if self.conversations.len() >= MAX_CONVERSATIONS {
                self.conversations.clear();
            }
            self.vectors = self.conversations.values().flatten().map(|message| message.vectors.len()).sum();
        }
        let messages = self.conversations.entry(key).or_default();
        let text = crate::question::bounded(text, MAX_CHARS).to_owned();
        messages.push_back(Message { at: now, text, vectors: Known::new() });
        while messages.len() > KEEP {
            if let Some(old) = messages.pop_front() {
                self.vectors = self.vectors.saturating_sub(old.vectors.len());
            }
        }
    }

    /// Keeps `vectors` with the conversation's latest message, when that is
    /// still `text`.
    pub(crate) fn remember(&mut self, key: Key, text: &str, vectors: Known) {
        if self.vectors + vectors.len() > MAX_VECTORS {
            for message in self.conversations.values_mut().flatten() {
                message.vectors.clear();
            }
            self.vectors = 0;
        }
        let text = crate::question::bounded(text, MAX_CHARS);
        let latest = self.conversations.get_mut(&key).and_then(|messages| messages.back_mut());
        if let Some(message) = latest.filter(|message| message.text == text) {
            self.vectors = (self.vectors + vectors.len()).saturating_sub(message.vectors.len());
            message.vectors = vectors;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_messages_of_each_conversation_for_half_an_hour() {
        let mut recent = Recent::default();
        let start = Instant::now();
        for text in ["one", "two", "three", "four"] {
            recent.push((1, 7), text, start);
        }
        recent.push((2, 7), "elsewhere", start);
        assert_eq!(recent.context((1, 7), start).0, ["two", "three", "four"]);
        assert_eq!(recent.context((1, 8), start).0, Vec::<String>::new());
        assert_eq!(recent.context((1, 7), start + FOR).0, Vec::<String>::new());
    }

    #[test]
    fn keeps_a_messages_vectors_while_the_message_is_kept() {
        let mut recent = Recent::default();
        let start = Instant::now();
        let vectors = |text: &str| Known::from([(text.to_owned(), vec![1.0; 3])]);
        recent.push((1, 7), "one", start);
        recent.remember((1, 7), "one", vectors("one"));
        recent.push((1, 7), "two", start);
        // Not the latest message any more: nothing is kept.
        recent.remember((1, 7), "one", vectors("stale"));
        let (_, known) = recent.context((1, 7), start);
        assert_eq!(known, vectors("one"));
        for text in ["three", "four"] {
            recent.push((1, 7), text, start);
        }
        assert!(recent.context((1, 7), start).1.is_empty(), "a dropped message's vectors go with it");
        assert_eq!(recent.vectors, 0);
    }

    #[test]
    fn drops_every_kept_vector_past_the_bound_and_keeps_the_texts() {
        let mut recent = Recent::default();
        let start = Instant::now();
        recent.push((1, 7), "one", start);
        let many: Known = (0..MAX_VECTORS).map(|i| (i.to_string(), vec![0.5])).collect();
        recent.remember((1, 7), "one", many);
        assert_eq!(recent.vectors, MAX_VECTORS);
        recent.push((2, 7), "two", start);
        recent.remember((2, 7), "two", Known::from([("two".to_owned(), vec![0.5])]));
        assert_eq!(recent.vectors, 1);
        assert!(recent.context((1, 7), start).1.is_empty());
        assert_eq!(recent.context((1, 7), start).0, ["one"]);
        assert_eq!(recent.context((2, 7), start).1.len(), 1);
    }
}
