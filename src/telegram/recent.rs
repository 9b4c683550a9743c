//! The last few messages of each conversation, in memory only and never
//! stored, so the safety screen sees danger built across messages ("I can't
//! do this anymore" … "how many would it take"). Lost on restart, on purpose.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Messages kept per conversation.
const KEEP: usize = crate::question::CONTEXT_MESSAGES;
/// Older messages no longer count as context.
const FOR: Duration = Duration::from_secs(30 * 60);
/// Each kept message is cut to this many characters.
const MAX_CHARS: usize = 1000;
/// Past this many conversations, the quiet ones are forgotten.
const MAX_CONVERSATIONS: usize = 10_000;

/// A conversation: one person in one chat.
pub(crate) type Key = (i64, u64);

#[derive(Default)]
pub(crate) struct Recent {
    conversations: HashMap<Key, VecDeque<(Instant, String)>>,
}

impl Recent {
    /// The conversation's recent messages, oldest first.
    pub(crate) fn context(&mut self, key: Key, now: Instant) -> Vec<String> {
        let Some(messages) = self.conversations.get_mut(&key) else { return Vec::new() };
        messages.retain(|(at, _)| now.saturating_duration_since(*at) < FOR);
        messages.iter().map(|(_, text)| text.clone()).collect()
    }

    /// Remembers `text` as the conversation's latest message.
    pub(crate) fn push(&mut self, key: Key, text: &str, now: Instant) {
        if self.conversations.len() >= MAX_CONVERSATIONS && !self.conversations.contains_key(&key) {
            self.conversations
                .retain(|_, messages| messages.back().is_some_and(|(at, _)| now.saturating_duration_since(*at) < FOR));
            if self.conversations.len() >= MAX_CONVERSATIONS {
                self.conversations.clear();
            }
        }
        let messages = self.conversations.entry(key).or_default();
        messages.push_back((now, crate::question::bounded(text, MAX_CHARS).to_owned()));
        while messages.len() > KEEP {
            messages.pop_front();
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
        assert_eq!(recent.context((1, 7), start), ["two", "three", "four"]);
        assert_eq!(recent.context((1, 8), start), Vec::<String>::new());
        assert_eq!(recent.context((1, 7), start + FOR), Vec::<String>::new());
    }
}
