//! An `Engine` is one immutable version of everything needed to answer: the
//! validated knowledge base and its index. A reload builds a new one beside
//! the old and swaps a pointer, so a question is always answered wholly by
//! one version.

use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::Context;

use crate::knowledge::{self, KnowledgeBase};
use crate::responder::{self, Kind, Reply};
use crate::safety::Screen;
use crate::search::Index;

pub struct Engine {
    pub kb: KnowledgeBase,
    pub index: Index,
    pub safety: &'static Screen,
    pub loaded_at: SystemTime,
    /// How long building the index took.
    pub build_time: std::time::Duration,
}

impl Engine {
    /// Indexes an already validated knowledge base.
    pub fn new(kb: KnowledgeBase) -> anyhow::Result<Self> {
        let started = Instant::now();
        let index = Index::build(&kb).context("building the search index")?;
        let safety = Screen::global().context("compiling the safety patterns")?;
        Ok(Self { kb, index, safety, loaded_at: SystemTime::now(), build_time: started.elapsed() })
    }

    /// Loads, validates and indexes the knowledge directory `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let kb = knowledge::load(dir).with_context(|| format!("loading {}", dir.display()))?;
        Self::new(kb)
    }

    /// Asks every entry's question and alternates, and lists each phrasing
    /// that does not get its own entry as the answer. Empty when sound.
    pub fn self_test(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for entry in &self.kb.entries {
            for phrasing in std::iter::once(&entry.question).chain(&entry.alternates) {
                let reply = self.reply(phrasing);
                if reply.kind == Kind::Answer && reply.entry.as_deref() == Some(entry.id.as_str()) {
                    continue;
                }
                let got = match (&reply.entry, reply.kind) {
                    (Some(other), _) => format!("answer `{other}`"),
                    (None, Kind::Clarify) => format!("clarify [{}]", reply.suggestions.join(", ")),
                    (None, kind) => kind.as_str().to_owned(),
                };
                failures.push(format!("self-test: entry `{}`: {phrasing:?} gets {got}", entry.id));
            }
        }
        failures
    }

    /// The reply to one message. Never fails and never panics on any text.
    pub fn reply(&self, text: &str) -> Reply {
        responder::respond(self, text)
    }
}
