//! Retrieval: turns text into analysed terms, indexes every entry in an
//! in-memory Tantivy index, and returns candidate entries for a question with
//! two signals the responder decides on: the BM25 score and the share of the
//! question's informative words the entry covers.
//!
//! All analysis (normalising, stop words, stemming, synonyms, typo repair) is
//! done here and handed to Tantivy as pre-tokenised text, so the index and
//! the queries use exactly one analyser, and user text never reaches a query
//! parser: `AND`, `title:x`, quotes or `^` are just words. This module makes
//! no decision about what to reply.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{PreTokenizedString, Token};
use tantivy::{DocAddress, Index as TantivyIndex, Searcher, TantivyDocument, Term};

mod analyzer;
mod dense;
mod vocabulary;

pub use analyzer::{Analyzer, Word};
pub use dense::{Closeness, Dense};
use vocabulary::Vocabulary;

use crate::knowledge::KnowledgeBase;

/// Weights of a match in the phrasings and in the answer, for BM25.
const PHRASING_BOOST: f32 = 1.0;
const ANSWER_BOOST: f32 = 0.1;

/// How much the BM25 score, relative to the best hit's, adds to coverage
/// when ranking.
const BM25_SHARE: f32 = 0.3;

/// How much the fit with the closest phrasing adds when ranking.
const FIT_SHARE: f32 = 1.0;
/// How much a phrasing's unasked words count against its fit.
const EXTRA_PENALTY: f32 = 0.5;

/// What an exact phrasing match adds when ranking: the question says what
/// one of the entry's own phrasings says.
const EXACT_BONUS: f32 = 0.2;
/// What a phrasing in the question's own words adds on top (see `search`).
const VERBATIM_BONUS: f32 = 0.1;

/// How strongly a question word found only in the answer or the topic title
/// counts towards coverage, compared with one in the question or alternates.
const ANSWER_STRENGTH: f32 = 0.6;
const TOPIC_STRENGTH: f32 = 0.5;

/// Bounds on a concept's weight: common words still count a little, and no
/// single rare word decides alone.
const MIN_WEIGHT: f32 = 0.4;
const MAX_WEIGHT: f32 = 3.0;
/// The weight of a word the knowledge base never uses. It is what tells
/// "side effects of ibuprofen" from "side effects".
const UNKNOWN_WEIGHT: f32 = 2.5;
/// The weight of an everyday word: it says little about the subject
/// ("hurt", "ways", "long"), whether or not the knowledge base uses it.
const GENERAL_WEIGHT: f32 = 0.7;

/// A synonym group member as stems of all its words, stop words included, so
/// that phrases such as "how much" can be recognised.
struct SynonymTable {
    /// First stem of a member → (member stems, group).
    by_first: HashMap<String, Vec<(Vec<String>, usize)>>,
    /// For each group, its members as term ids of their informative words;
    /// members with no indexed word are left out.
    groups: Vec<Vec<Vec<u32>>>,
}

/// One thing a question asks about: a word, or a phrase from a synonym group,
/// with the ways an entry can match it.
#[derive(Debug, Clone)]
pub struct Concept {
    /// The words as the user typed them (normalised).
    pub text: String,
    /// Each alternative is a set of term ids that must all be present.
    pub alternatives: Vec<Vec<u32>>,
    /// How informative the concept is (inverse document frequency).
    pub weight: f32,
    /// An everyday word (or digits): it says little about the subject.
    pub general: bool,
}

impl Concept {
    pub fn is_known(&self) -> bool {
        !self.alternatives.is_empty()
    }
}

/// A question after analysis.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub concepts: Vec<Concept>,
}

impl Analysis {
    pub fn total_weight(&self) -> f32 {
        self.concepts.iter().map(|concept| concept.weight).sum()
    }
}

/// A candidate entry for a question.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Index into `KnowledgeBase::entries`.
    pub entry: usize,
    /// Tantivy's BM25 score with field boosts: relative, not a probability.
    pub score: f32,
    /// Weighted share of the question's concepts this entry covers, 0 to 1.
    pub coverage: f32,
    /// What hits are ordered by: coverage plus a share of the BM25 score
    /// relative to the best hit's, so BM25 decides between similar coverage.
    pub rank: f32,
    /// The summed weight of the concepts it covers: how much evidence there
    /// is, where coverage says how much of the question it explains.
    pub evidence: f32,
    /// The question says exactly what one of the entry's phrasings says
    /// (same informative words, synonyms allowed).
    pub exact: bool,
    /// Some concept that is not an everyday word is in the entry's phrasings.
    pub anchored: bool,
    /// How closely the question matches the entry's closest single
    /// phrasing, 0 to 1: matched weight over the question's weight plus the
    /// phrasing's unasked words. Unlike coverage, it penalises an entry whose
    /// phrasings ask about something else as well.
    pub fit: f32,
}

/// A small set of term ids: a sorted vector, a quarter of a hash set's size.
struct TermSet(Vec<u32>);

impl TermSet {
    fn new(mut ids: Vec<u32>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        ids.shrink_to_fit();
        Self(ids)
    }

    fn contains(&self, id: &u32) -> bool {
        self.0.binary_search(id).is_ok()
    }

    fn iter(&self) -> std::slice::Iter<'_, u32> {
        self.0.iter()
    }
}

struct EntryTerms {
    /// Each phrasing (question and alternates) as its own set of terms.
    each_phrasing: Vec<TermSet>,
    phrasings: TermSet,
    answer: TermSet,
    topic: TermSet,
}

struct Fields {
    phrasings: Field,
    answer: Field,
    entry: Field,
}

/// The in-memory index of one knowledge base. Immutable once built.
pub struct Index {
    analyzer: Analyzer,
    vocabulary: Vocabulary,
    synonyms: SynonymTable,
    entries: Vec<EntryTerms>,
    /// The entries with a phrasing of exactly these terms (sorted ids). BM25
    /// ranks an entry with many phrasings low for any one of them (its
    /// document is long), so a question that says exactly what a phrasing
    /// says could miss its entry among the top documents.
    verbatim: HashMap<Vec<u32>, Vec<usize>>,
    fields: Fields,
    /// Held for the index's lifetime: the index never changes once built.
    searcher: Searcher,
    /// Entry index of each document, by segment and document id, read once
    /// from the fast field so a hit costs no stored-document fetch.
    doc_entries: Vec<Vec<u32>>,
    _index: TantivyIndex,
}

impl Index {
    /// Builds the index for `kb`. Fails only if Tantivy does.
    pub fn build(kb: &KnowledgeBase) -> anyhow::Result<Self> {
        let analyzer = Analyzer::default();
        let mut vocabulary = Vocabulary::default();

        let indexing = TextFieldIndexing::default().set_index_option(IndexRecordOption::WithFreqs);
        let text_options = TextOptions::default().set_indexing_options(indexing);
        let mut schema = Schema::builder();
        let fields = Fields {
            phrasings: schema.add_text_field("phrasings", text_options.clone()),
            answer: schema.add_text_field("answer", text_options),
            entry: schema.add_u64_field("entry", FAST),
        };
        let index = TantivyIndex::create_in_ram(schema.build());
        // One thread keeps documents in insertion order and memory small; the
        // knowledge base is small enough that more threads do not pay off.
        let mut writer = index.writer_with_num_threads(1, 20_000_000).context("creating the index writer")?;

        let mut entries = Vec::with_capacity(kb.entries.len());
        // Every distinct word as written, with its stem: typo repair works on words.
        let mut surface: HashMap<String, String> = HashMap::new();
        let mut analyse = |text: &str| -> Vec<String> {
            let words = analyzer.words(text);
            let mut terms = Vec::with_capacity(words.len());
            for word in words.into_iter().filter(|word| !word.stop) {
                terms.push(word.stem.clone());
                surface.entry(word.text).or_insert(word.stem);
            }
            terms
        };
        for (position, entry) in kb.entries.iter().enumerate() {
            let each_phrasing_terms: Vec<Vec<String>> = entry.phrasings().map(&mut analyse).collect();
            let phrasing_terms: Vec<String> = each_phrasing_terms.iter().flatten().cloned().collect();
            let answer_terms = analyse(&entry.answer);
            let topic_terms = analyzer.terms(&kb.topics[entry.topic].title);

            let mut ids = |terms: &[String]| TermSet::new(terms.iter().map(|term| vocabulary.intern(term)).collect());
            let terms = EntryTerms {
                each_phrasing: each_phrasing_terms.iter().map(|terms| ids(terms)).collect(),
                phrasings: ids(&phrasing_terms),
                answer: ids(&answer_terms),
                topic: ids(&topic_terms),
            };
            let all: HashSet<u32> =
                terms.phrasings.iter().chain(terms.answer.iter()).chain(terms.topic.iter()).copied().collect();
            for id in all {
                vocabulary.df[id as usize] += 1;
            }
            entries.push(terms);

            let mut document = TantivyDocument::default();
            document.add_pre_tokenized_text(fields.phrasings, pre_tokenized(phrasing_terms));
            document.add_pre_tokenized_text(fields.answer, pre_tokenized(answer_terms));
            document.add_u64(fields.entry, position as u64);
            writer.add_document(document).context("indexing an entry")?;
        }
        writer.commit().context("committing the index")?;
        for (word, stem) in surface {
            if let Some(id) = vocabulary.ids.get(&stem).copied() {
                vocabulary.add_surface(&word, id);
            }
        }
        vocabulary.build_deletions();
        let count = kb.entries.len().max(1) as f32;
        vocabulary.weight =
            vocabulary.df.iter().map(|df| idf(count, *df as f32).clamp(MIN_WEIGHT, MAX_WEIGHT)).collect();

        let synonyms = build_synonyms(kb, &analyzer, &vocabulary);
        let searcher = index.reader().context("opening the index reader")?.searcher();
        let mut doc_entries = Vec::new();
        for segment in searcher.segment_readers() {
            let column = segment.fast_fields().u64("entry").context("reading the entry field")?;
            let entries: Vec<u32> =
                (0..segment.max_doc()).map(|doc| column.first(doc).unwrap_or(u64::MAX) as u32).collect();
            doc_entries.push(entries);
        }
        let mut verbatim: HashMap<Vec<u32>, Vec<usize>> = HashMap::new();
        for (position, entry) in entries.iter().enumerate() {
            // A phrasing of stop words alone has no terms to say it in.
            for phrasing in entry.each_phrasing.iter().filter(|phrasing| !phrasing.0.is_empty()) {
                let owners = verbatim.entry(phrasing.0.clone()).or_default();
                if !owners.contains(&position) {
                    owners.push(position);
                }
            }
        }
        Ok(Self { analyzer, vocabulary, synonyms, entries, verbatim, fields, searcher, doc_entries, _index: index })
    }

    /// The weight of a concept matched by any of `alternatives`: the
    /// inverse document frequency of its most common alternative (close to
    /// that of their union), within the weight bounds.
    fn weight(&self, alternatives: &[Vec<u32>]) -> f32 {
        let df = alternatives
            .iter()
            .map(|alternative| alternative.iter().map(|id| self.vocabulary.df[*id as usize]).min().unwrap_or(0))
            .max();
        match df {
            Some(df) => idf(self.entries.len().max(1) as f32, df as f32).clamp(MIN_WEIGHT, MAX_WEIGHT),
            None => UNKNOWN_WEIGHT,
        }
    }

    /// Analyses a question: synonyms first (longest phrase wins), then
    /// single words, with typo repair for longer unknown words.
    pub fn analyze(&self, text: &str) -> Analysis {
        let words = self.analyzer.words(text);
        let mut concepts: Vec<Concept> = Vec::new();
        let mut at = 0;
        while at < words.len() {
            if let Some((length, group)) = self.synonym_at(&words, at) {
                let text = words[at..at + length].iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
                let stems: Vec<&str> =
                    words[at..at + length].iter().filter(|w| !w.stop).map(|w| w.stem.as_str()).collect();
                if !stems.is_empty() || !self.synonyms.groups[group].is_empty() {
                    concepts.push(self.group_concept(text, group));
                }
                at += length;
                continue;
            }
            let word = &words[at];
            at += 1;
            if word.stop {
                continue;
            }
            concepts.push(self.word_concept(word));
        }
        // The same concept twice ("how much ... cost", "ketamine ... ketamine") counts once.
        let mut seen = HashSet::new();
        concepts.retain(|concept| {
            let key = if concept.is_known() {
                (concept.alternatives.clone(), String::new())
            } else {
                (Vec::new(), concept.text.clone())
            };
            seen.insert(key)
        });
        Analysis { concepts }
    }

    fn synonym_at(&self, words: &[Word], at: usize) -> Option<(usize, usize)> {
        let candidates = self.synonyms.by_first.get(&words[at].stem)?;
        candidates
            .iter()
            .filter(|(stems, _)| {
                stems.len() <= words.len() - at && stems.iter().zip(&words[at..]).all(|(stem, word)| *stem == word.stem)
            })
            .map(|(stems, group)| (stems.len(), *group))
            .max_by_key(|(length, _)| *length)
    }

    fn group_concept(&self, text: String, group: usize) -> Concept {
        let alternatives = self.synonyms.groups[group].clone();
        let weight = self.weight(&alternatives);
        Concept { text, alternatives, weight, general: false }
    }

    fn word_concept(&self, word: &Word) -> Concept {
        let known = self.vocabulary.ids.get(&word.stem).copied().or_else(|| self.vocabulary.correct(&word.text));
        match known {
            Some(id) => {
                // A corrected word may belong to a synonym group.
                let term = &self.vocabulary.terms[id as usize];
                if let Some(group) = self.single_word_group(term) {
                    return self.group_concept(word.text.clone(), group);
                }
                let alternatives = vec![vec![id]];
                let mut weight = self.weight(&alternatives);
                let general = self.analyzer.is_general(word);
                if general {
                    weight = weight.min(GENERAL_WEIGHT);
                }
                Concept { text: word.text.clone(), weight, alternatives, general }
            }
            None => {
                // Digits and everyday words are rarely what a question is about.
                let general = word.text.chars().all(|c| c.is_ascii_digit())
                    || word.text.chars().count() <= 2
                    || self.analyzer.is_general(word);
                let weight = if general { GENERAL_WEIGHT } else { UNKNOWN_WEIGHT };
                Concept { text: word.text.clone(), alternatives: Vec::new(), weight, general }
            }
        }
    }

    fn single_word_group(&self, stem: &str) -> Option<usize> {
        let candidates = self.synonyms.by_first.get(stem)?;
        candidates.iter().find(|(stems, _)| stems.len() == 1).map(|(_, group)| *group)
    }

    /// The best `limit` entries for an analysed question, best first: ranked
    /// by coverage, then by BM25 score.
    pub fn search(&self, analysis: &Analysis, limit: usize) -> Vec<Hit> {
        let query = self.query(analysis);
        let Some(query) = query else {
            return Vec::new();
        };
        let searcher = &self.searcher;
        let candidates = limit.max(8);
        let top: Vec<(f32, DocAddress)> =
            match searcher.search(&query, &TopDocs::with_limit(candidates).order_by_score()) {
                Ok(top) => top,
                Err(error) => {
                    tracing::error!("search failed: {error}");
                    return Vec::new();
                }
            };
        let total = analysis.total_weight();
        let asked: HashSet<u32> =
            analysis.concepts.iter().flat_map(|concept| concept.alternatives.iter().flatten().copied()).collect();
        let mut found: Vec<(f32, usize)> = top
            .into_iter()
            .filter_map(|(score, address)| {
                let entry = *self.doc_entries.get(address.segment_ord as usize)?.get(address.doc_id as usize)? as usize;
                (entry < self.entries.len()).then_some((score, entry))
            })
            .collect();
        // The question's own words, not their synonyms: what a phrasing
        // written the same way holds.
        let own_words: Option<Vec<u32>> = analysis
            .concepts
            .iter()
            .flat_map(|concept| self.analyzer.words(&concept.text))
            .filter(|word| !word.stop)
            .map(|word| self.vocabulary.ids.get(&word.stem).copied())
            .collect();
        let own_words = own_words.map(|mut ids| {
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        let owners: &[usize] = own_words.and_then(|ids| self.verbatim.get(&ids)).map_or(&[], Vec::as_slice);
        for &entry in owners {
            if !found.iter().any(|&(_, seen)| seen == entry) {
                found.push((0.0, entry));
            }
        }
        let mut hits: Vec<Hit> = found
            .into_iter()
            .map(|(score, entry)| {
                let coverage = self.coverage(analysis, entry, total);
                let (fit, exact) = self.phrasing_match(analysis, &asked, entry, total);
                let phrasings = &self.entries[entry].phrasings;
                let anchored = analysis.concepts.iter().any(|concept| {
                    !concept.general
                        && concept
                            .alternatives
                            .iter()
                            .any(|alternative| alternative.iter().all(|id| phrasings.contains(id)))
                });
                Hit { entry, score, coverage, rank: coverage, evidence: coverage * total, exact, fit, anchored }
            })
            .collect();
        let best_score = hits.iter().map(|hit| hit.score).fold(0.0, f32::max);
        for hit in &mut hits {
            if best_score > 0.0 {
                hit.rank = hit.coverage + BM25_SHARE * hit.score / best_score + FIT_SHARE * hit.fit;
            }
            if hit.exact {
                hit.rank += EXACT_BONUS;
            }
            // Said in the phrasing's own words, not through a synonym: of two
            // exact matches ("ketamine and counseling", one entry's phrasing,
            // and "ketamine and therapy", another's) this is the one meant.
            if owners.contains(&hit.entry) {
                hit.rank += VERBATIM_BONUS;
            }
        }
        hits.sort_by(|a, b| b.rank.total_cmp(&a.rank).then(b.exact.cmp(&a.exact)).then(a.entry.cmp(&b.entry)));
        hits.truncate(limit);
        hits
    }

    /// How the question matches the closest single phrasing of `entry`:
    /// its fit (matched weight over the question's weight plus the
    /// phrasing's unasked words), and whether some phrasing matches exactly
    /// (every concept found in it, every word of it asked for).
    fn phrasing_match(&self, analysis: &Analysis, asked: &HashSet<u32>, entry: usize, total: f32) -> (f32, bool) {
        if total <= 0.0 {
            return (0.0, false);
        }
        let all_known = analysis.concepts.iter().all(Concept::is_known);
        let mut best_fit = 0.0f32;
        let mut exact = false;
        for phrasing in &self.entries[entry].each_phrasing {
            let mut matched = 0.0;
            let mut found = 0;
            for concept in &analysis.concepts {
                if concept.alternatives.iter().any(|alternative| alternative.iter().all(|id| phrasing.contains(id))) {
                    matched += concept.weight;
                    found += 1;
                }
            }
            let (mut extra, mut unasked) = (0.0, 0);
            for id in phrasing.iter().filter(|id| !asked.contains(id)) {
                extra += self.vocabulary.weight[*id as usize];
                unasked += 1;
            }
            best_fit = best_fit.max(matched / (total + EXTRA_PENALTY * extra));
            exact |= all_known && unasked == 0 && found == analysis.concepts.len();
        }
        (best_fit, exact)
    }

    /// The term behind an id, for explanations.
    pub fn term(&self, id: u32) -> &str {
        &self.vocabulary.terms[id as usize]
    }

    /// Weighted share of the question's concepts that `entry` contains.
    pub fn coverage(&self, analysis: &Analysis, entry: usize, total: f32) -> f32 {
        if total <= 0.0 {
            return 0.0;
        }
        let terms = &self.entries[entry];
        let covered: f32 = analysis
            .concepts
            .iter()
            .map(|concept| {
                let strength = concept
                    .alternatives
                    .iter()
                    .map(|alternative| {
                        if alternative.iter().all(|id| terms.phrasings.contains(id)) {
                            1.0
                        } else if alternative.iter().all(|id| terms.phrasings.contains(id) || terms.answer.contains(id))
                        {
                            ANSWER_STRENGTH
                        } else if alternative.iter().all(|id| terms.topic.contains(id)) {
                            TOPIC_STRENGTH
                        } else {
                            0.0
                        }
                    })
                    .fold(0.0, f32::max);
                strength * concept.weight
            })
            .sum();
        covered / total
    }

    /// The candidate query: every alternative of every concept as a term
    /// (or all-terms) query, on the phrasings and, weakly, on the answer.
    /// Candidates come mostly from how people ask: with a higher answer
    /// weight, an incidental word in a long answer crowds out the right entry.
    /// Topic titles count through coverage only.
    fn query(&self, analysis: &Analysis) -> Option<Box<dyn Query>> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for concept in &analysis.concepts {
            for (position, alternative) in concept.alternatives.iter().enumerate() {
                clauses.extend(
                    self.all_terms(self.fields.phrasings, alternative, PHRASING_BOOST).map(|q| (Occur::Should, q)),
                );
                // In the answer only the concept's own word (the first
                // alternative): a tie-breaker, at half the term lookups.
                if position == 0 {
                    clauses.extend(
                        self.all_terms(self.fields.answer, alternative, ANSWER_BOOST).map(|q| (Occur::Should, q)),
                    );
                }
            }
        }
        if clauses.is_empty() {
            return None;
        }
        Some(Box::new(BooleanQuery::new(clauses)))
    }

    /// A query matching documents with every term of `alternative` in `field`.
    fn all_terms(&self, field: Field, alternative: &[u32], boost: f32) -> Option<Box<dyn Query>> {
        let mut terms: Vec<Box<dyn Query>> = alternative
            .iter()
            .map(|id| {
                let term = Term::from_field_text(field, &self.vocabulary.terms[*id as usize]);
                Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)) as Box<dyn Query>
            })
            .collect();
        let query = match terms.len() {
            0 => return None,
            1 => terms.remove(0),
            _ => Box::new(BooleanQuery::new(terms.into_iter().map(|query| (Occur::Must, query)).collect())),
        };
        Some(Box::new(BoostQuery::new(query, boost)))
    }
}

fn idf(count: f32, df: f32) -> f32 {
    (1.0 + (count - df + 0.5) / (df + 0.5)).ln()
}

fn pre_tokenized(terms: Vec<String>) -> PreTokenizedString {
    let tokens = terms
        .iter()
        .enumerate()
        .map(|(position, term)| Token {
            offset_from: 0,
            offset_to: 0,
            position,
            text: term.clone(),
            position_length: 1,
        })
        .collect();
    PreTokenizedString { text: terms.join(" "), tokens }
}

fn build_synonyms(kb: &KnowledgeBase, analyzer: &Analyzer, vocabulary: &Vocabulary) -> SynonymTable {
    let mut by_first: HashMap<String, Vec<(Vec<String>, usize)>> = HashMap::new();
    let mut groups = Vec::with_capacity(kb.synonyms.len());
    for (group, members) in kb.synonyms.iter().enumerate() {
        let mut alternatives = Vec::new();
        for member in members {
            let words = analyzer.words(member);
            let stems: Vec<String> = words.iter().map(|word| word.stem.clone()).collect();
            if let Some(first) = stems.first() {
                by_first.entry(first.clone()).or_default().push((stems.clone(), group));
            }
            let informative: Vec<&Word> = words.iter().filter(|word| !word.stop).collect();
            let ids: Option<Vec<u32>> =
                informative.iter().map(|word| vocabulary.ids.get(&word.stem).copied()).collect();
            if let Some(ids) = ids
                && !ids.is_empty()
                && !alternatives.contains(&ids)
            {
                alternatives.push(ids);
            }
        }
        groups.push(alternatives);
    }
    SynonymTable { by_first, groups }
}
