//! An `Engine` is one immutable version of everything needed to answer: the
//! validated knowledge base, its Tantivy index and, when the model is
//! loaded, its phrasing vectors. A reload builds a new one beside the old
//! (with the running engine's model) and swaps a pointer, so a question is
//! always answered wholly by one version.

use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::Context;

use crate::knowledge::{self, Entry, KnowledgeBase};
use crate::model::Semantic;
use crate::safety::exemplars::Exemplars;
use crate::safety::{Meaning, Screen};
use crate::search::{Dense, Index};

pub struct Engine {
    pub kb: KnowledgeBase,
    pub index: Index,
    /// The model and the phrasing vectors; `None` runs lexical-only.
    pub semantic: Option<(Semantic, Dense)>,
    pub safety: &'static Screen,
    /// The safety examples read by meaning (`safety.toml`, else the shipped
    /// ones); `None` without the model, when only the patterns screen.
    pub meaning: Option<Meaning>,
    pub loaded_at: SystemTime,
    /// How long building the index took.
    pub build_time: std::time::Duration,
}

impl Engine {
    /// Indexes an already validated knowledge base, lexical-only.
    pub fn new(kb: KnowledgeBase) -> anyhow::Result<Self> {
        Self::build(kb, None)
    }

    /// Indexes an already validated knowledge base and, with a model, embeds
    /// its phrasings (through the model's cache).
    pub fn build(kb: KnowledgeBase, semantic: Option<Semantic>) -> anyhow::Result<Self> {
        let started = Instant::now();
        let index = Index::build(&kb).context("building the search index")?;
        let (semantic, meaning) = match semantic {
            Some(semantic) => {
                let dense = Dense::build(&kb, &semantic).context("embedding the phrasings")?;
                let exemplars = match &kb.exemplars {
                    Some(exemplars) => exemplars.clone(),
                    None => Exemplars::built_in()?,
                };
                let phrasings: Vec<&str> = kb.entries.iter().flat_map(Entry::phrasings).collect();
                let meaning =
                    Meaning::build(&exemplars, &phrasings, &semantic).context("embedding the safety examples")?;
                (Some((semantic, dense)), Some(meaning))
            }
            None => (None, None),
        };
        let safety = Screen::global().context("compiling the safety patterns")?;
        Ok(Self { kb, index, semantic, safety, meaning, loaded_at: SystemTime::now(), build_time: started.elapsed() })
    }

    /// Loads, validates and indexes the knowledge directory `dir`, lexical-only.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        Self::load_with(dir, None)
    }

    /// Loads, validates and indexes `dir`, with the model when given.
    pub fn load_with(dir: &Path, semantic: Option<Semantic>) -> anyhow::Result<Self> {
        let kb = knowledge::load(dir).with_context(|| format!("loading {}", dir.display()))?;
        Self::build(kb, semantic)
    }

    /// The model this engine reads meaning with, for building the next version.
    pub fn model(&self) -> Option<Semantic> {
        self.semantic.as_ref().map(|(semantic, _)| semantic.clone())
    }
}
