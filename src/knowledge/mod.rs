//! The knowledge base: its types, loading from `knowledge/`, and validation.
//!
//! Loading never stops at the first problem: every problem in every file is
//! collected with its `path:line:col`, and a knowledge base is only built when
//! there are none. A `KnowledgeBase` value is therefore always valid: other
//! modules never re-check ids or references. This module does no searching
//! and knows nothing of Telegram.

mod load;
mod schema;

use std::fmt;
use std::path::PathBuf;

pub use load::{LoadError, TELEGRAM_LIMIT, load};

/// Entries with fewer alternates than this are seldom matched to questions
/// asked in other words: on the sleep test knowledge base, held-out
/// questions were answered right 0.16 of the time with about 6 alternates
/// per entry and 0.56 with about 21 (BENCHMARKS.md). `check` notes them.
pub const FEW_ALTERNATES: usize = 12;

/// A validated knowledge base.
#[derive(Debug, Clone)]
pub struct KnowledgeBase {
    pub topics: Vec<Topic>,
    pub entries: Vec<Entry>,
    pub sources: Vec<Source>,
    pub messages: Messages,
    /// Groups of words or phrases that mean the same, already normalised.
    pub synonyms: Vec<Vec<String>>,
    /// The safety examples of `safety.toml`, when the directory has one.
    pub exemplars: Option<crate::safety::exemplars::Exemplars>,
    pub stats: LoadStats,
}

/// Counts and identity of what was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadStats {
    pub files: usize,
    pub alternates: usize,
    /// A short hash of every file's bytes: the knowledge "version".
    pub content_hash: String,
}

/// A group of entries shown together in `/topics`; one per FAQ file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub id: String,
    pub title: String,
}

/// One curated question and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// Index into `KnowledgeBase::topics`.
    pub topic: usize,
    pub question: String,
    pub alternates: Vec<String>,
    pub answer: String,
    /// Ids of sources, all present in `KnowledgeBase::sources`.
    pub sources: Vec<String>,
    /// Ids of other entries, all present.
    pub related: Vec<String>,
    /// Show the crisis lines under this answer (suicide, overdose).
    pub crisis_resources: bool,
}

impl Entry {
    /// Its question, then its alternates: every wording that asks for it.
    pub fn phrasings(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.question.as_str()).chain(self.alternates.iter().map(String::as_str))
    }
}

/// A verified reference that answers cite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: String,
    /// A brief label shown under answers, e.g. "Feder et al., Am J Psychiatry 2021".
    pub label: String,
    pub citation: String,
    pub doi: Option<String>,
    pub url: Option<String>,
}

impl Source {
    /// The DOI as a link, else the URL, if the source has either.
    pub fn link(&self) -> Option<String> {
        match (&self.doi, &self.url) {
            (Some(doi), _) => Some(format!("https://doi.org/{doi}")),
            (None, Some(url)) => Some(url.clone()),
            (None, None) => None,
        }
    }
}

macro_rules! messages {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Every text the bot says that is not an FAQ answer; all required.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Messages {
            $($(#[$doc])* pub $name: String,)*
        }

        impl Messages {
            /// The keys `messages.toml` must have, and the only ones it may have.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Builds the messages from checked key/value pairs; `None` when a
            /// key is missing (the loader reports which).
            fn from_pairs(mut pairs: std::collections::HashMap<String, String>) -> Option<Self> {
                Some(Self { $($name: pairs.remove(stringify!($name))?,)* })
            }

            /// Like `from_pairs`, with missing keys left empty: for checks that
            /// should still run while other messages are missing.
            pub(crate) fn from_pairs_or_empty(pairs: &std::collections::HashMap<String, String>) -> Self {
                Self { $($name: pairs.get(stringify!($name)).cloned().unwrap_or_default(),)* }
            }
        }
    };
}

messages! {
    /// Ends every reply.
    clinician_note,
    welcome,
    help,
    about,
    no_answer,
    /// Introduces the list of topics after `no_answer`.
    no_answer_topics,
    /// Introduces the candidates of a `clarify` reply.
    clarify,
    greeting,
    thanks,
    goodbye,
    /// Follows the crisis lines in a crisis reply.
    crisis,
    /// Opens a reply to a medical emergency.
    emergency,
    /// Ends a reply to a medical emergency: what to do while help comes.
    emergency_closing,
    /// The checked crisis lines.
    crisis_resources,
    /// Ends crisis and emergency replies in place of `clinician_note`.
    crisis_note,
    /// Above the crisis lines when distress is likely but not certain.
    check_in,
    /// One line under every no-match and refusal.
    crisis_pointer,
    refusal,
    /// Introduces related entries under a refusal.
    refusal_related,
    non_text,
    empty,
    sources_label,
    related_label,
    /// Telegram: unknown commands.
    unknown_command,
    /// Telegram: the flood guard's one notice.
    flood,
    /// Telegram: after a 👍 or 👎.
    feedback_thanks,
    /// Telegram: above the topic buttons.
    topics_intro,
    /// Telegram: `/ask` with nothing after it.
    ask_usage,
}

impl KnowledgeBase {
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.id == id)
    }

    pub fn source(&self, id: &str) -> Option<&Source> {
        self.sources.iter().find(|source| source.id == id)
    }

    /// The entries with fewer than `FEW_ALTERNATES` alternates, with their
    /// counts, in file order.
    pub fn thin_entries(&self) -> Vec<(&str, usize)> {
        self.entries
            .iter()
            .filter(|entry| entry.alternates.len() < FEW_ALTERNATES)
            .map(|entry| (entry.id.as_str(), entry.alternates.len()))
            .collect()
    }

    /// One line for `faqbot check` and logs.
    pub fn summary(&self) -> String {
        format!(
            "{} files, {} topics, {} entries, {} alternates, {} sources, {} synonym groups (version {})",
            self.stats.files,
            self.topics.len(),
            self.entries.len(),
            self.stats.alternates,
            self.sources.len(),
            self.synonyms.len(),
            self.stats.content_hash,
        )
    }
}

/// One thing wrong with the knowledge files, at a place an editor can jump to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path.display(), self.line, self.col, self.message)
    }
}

/// Everything wrong with a knowledge directory; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the knowledge base; run `faqbot check` for the full list", .problems.len())]
pub struct Problems {
    /// Sorted by path, line and column.
    pub problems: Vec<Problem>,
}
