//! The decision: text in, one structured `Reply` out. Pure: no I/O, no
//! Telegram, no layout (the renderers in `reply` and `telegram::render` add
//! the clinician note).
//!
//! Order matters: the safety screen, an empty message, small talk, a bare
//! number, then retrieval and the answer / clarify / no_match decision.

use crate::engine::Engine;
use crate::knowledge::{Entry, KnowledgeBase};
use crate::question::{Known, Question};
use crate::reply::{Block, Net};
use crate::safety::{Crisis, Verdict};
use crate::search::{Analysis, Hit};

pub use crate::reply::{Kind, Reply};

pub use crate::question::MAX_QUESTION_CHARS;

/// The decision thresholds, tuned on tests/data/dev-tune.jsonl; see ARCHITECTURE.md.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Below this coverage by the best entry: no answer.
    pub answer: f32,
    /// A second entry ranked within this much of the first, with as much
    /// coverage, makes the question ambiguous.
    pub tie: f32,
    /// At least this coverage, with a word that is not an everyday one found
    /// in the entry's phrasings, answers however little evidence there is:
    /// "what does ketamine feel like" is short but fully covered.
    pub full: f32,
    /// The least summed weight of covered concepts for an answer, unless the
    /// question matches one of the entry's phrasings exactly: one common word
    /// ("what time is it") is not enough to answer on.
    pub evidence: f32,
    /// The decision when the model is loaded; the fields above serve
    /// lexical-only mode.
    pub hybrid: crate::decide::Hybrid,
}

pub const THRESHOLDS: Thresholds =
    Thresholds { answer: 0.6, tie: 0.05, full: 0.95, evidence: 1.5, hybrid: crate::decide::HYBRID };

/// The reply to one message. Never fails and never panics on any text.
pub fn respond(engine: &Engine, raw: &str) -> Reply {
    respond_in(engine, raw, &[])
}

/// The reply to `raw` in a chat whose last messages were `context`, oldest
/// first: danger built across messages counts.
pub fn respond_in(engine: &Engine, raw: &str, context: &[String]) -> Reply {
    respond_with(engine, raw, context, THRESHOLDS)
}

/// `respond_in` for a chat that keeps its messages' vectors: `known` holds
/// the earlier messages' sentence vectors, and this message's come back with
/// the reply, to keep for the next.
pub fn respond_remembering(engine: &Engine, raw: &str, context: &[String], known: &Known) -> (Reply, Known) {
    let question = Question::with_known(raw, context, engine.semantic.as_ref().map(|(semantic, _)| semantic), known);
    (respond_to(engine, &question, THRESHOLDS), question.sentence_vectors())
}

/// `respond_in` with other thresholds, for tuning.
pub fn respond_with(engine: &Engine, raw: &str, context: &[String], thresholds: Thresholds) -> Reply {
    let question = Question::new(raw, context, engine.semantic.as_ref().map(|(semantic, _)| semantic));
    respond_to(engine, &question, thresholds)
}

/// The reply to a question already prepared (and perhaps scanned ahead).
fn respond_to(engine: &Engine, question: &Question, thresholds: Thresholds) -> Reply {
    let kb = &engine.kb;
    // Safety first, on the whole message and the chat's last few.
    let verdict = crate::safety::judge(engine.safety, engine.meaning.as_ref(), question).verdict;
    match verdict {
        Verdict::Crisis(kind) => return crisis(kb, kind),
        Verdict::Refusal(_) => return refusal(engine, &question.text),
        Verdict::CheckIn | Verdict::Sensitive | Verdict::Clear => {}
    }
    let normalised = &question.normalised;
    let reply = if normalised.is_empty() {
        plain(Kind::NoMatch, kb.messages.empty.clone())
    } else if let Some(reply) = smalltalk(normalised, kb) {
        reply
    } else if normalised.split(' ').all(|word| word.chars().all(|c| c.is_ascii_digit())) {
        // A bare number means a choice only where choices were shown (chat
        // and buttons handle those); here it asks nothing.
        no_match(kb, None)
    } else if engine.semantic.is_some() {
        hybrid(engine, question, &thresholds.hybrid)
    } else {
        decide(engine, &focus(engine, &question.text), thresholds)
    };
    match verdict {
        Verdict::CheckIn => reply.with_net(Net::CheckIn),
        Verdict::Sensitive => reply.with_net(Net::Lines),
        _ => reply,
    }
}

/// The crisis lines first, then a short warm text; no buttons, no other
/// content. An emergency ends with what to do while help comes.
fn crisis(kb: &KnowledgeBase, kind: Crisis) -> Reply {
    let messages = &kb.messages;
    let blocks = if kind == Crisis::Emergency {
        vec![
            Block::Paragraph(messages.emergency.clone()),
            Block::CrisisLines,
            Block::Paragraph(messages.emergency_closing.clone()),
        ]
    } else {
        vec![Block::CrisisLines, Block::Paragraph(messages.crisis.clone())]
    };
    Reply { blocks, ..Reply::new(Kind::Crisis) }
}

/// What the bot cannot do, a pointer to the clinician, and general entries
/// that may still help (the best matches for the message, if any fit).
fn refusal(engine: &Engine, text: &str) -> Reply {
    let kb = &engine.kb;
    let mut hits = focus(engine, text).hits;
    hits.truncate(3);
    let best = hits.first().map_or(0.0, |hit| hit.rank);
    let related: Vec<&Entry> = hits
        .iter()
        .filter(|hit| hit.coverage >= REFUSAL_RELATED_COVERAGE && hit.rank >= best - REFUSAL_RELATED_RANK)
        .map(|hit| &kb.entries[hit.entry])
        .collect();
    let mut blocks = vec![Block::Paragraph(kb.messages.refusal.clone())];
    if !related.is_empty() {
        blocks.push(Block::List {
            lead: kb.messages.refusal_related.clone(),
            items: related.iter().map(|entry| entry.question.clone()).collect(),
            numbered: true,
        });
    }
    Reply {
        score: hits.first().map(|hit| hit.score),
        blocks,
        net: Net::Pointer,
        suggestions: related.iter().map(|entry| entry.id.clone()).collect(),
        ..Reply::new(Kind::Refusal)
    }
}

/// Entries offered under a refusal must cover at least this much of it, and
/// rank within this much of the best.
const REFUSAL_RELATED_COVERAGE: f32 = 0.3;
const REFUSAL_RELATED_RANK: f32 = 0.25;

/// Asks every entry's question and alternates, and lists each phrasing
/// that does not get its own entry as the answer. Empty when sound.
/// The phrasings are shared out over the cores (a reload waits for this).
pub fn self_test(engine: &Engine) -> Vec<String> {
    let phrasings: Vec<(&str, &str)> = engine
        .kb
        .entries
        .iter()
        .flat_map(|entry| entry.phrasings().map(|phrasing| (entry.id.as_str(), phrasing)))
        .collect();
    // Each phrasing's own vector is cached, but a phrasing of several
    // sentences also needs each sentence's: embedded one message at a time
    // they made a warm reload take seconds, so they are embedded here in
    // batches and kept in the vector cache for the next reload.
    if let Some((semantic, _)) = &engine.semantic {
        let questions: Vec<Question> =
            phrasings.iter().map(|(_, phrasing)| Question::new(phrasing, &[], None)).collect();
        let mut texts: Vec<&str> = questions.iter().flat_map(Question::texts_to_embed).collect();
        texts.sort_unstable();
        texts.dedup();
        if let Err(err) = semantic.embed_all(&texts) {
            tracing::warn!("could not embed the phrasings' sentences ahead of the self-test: {err:#}");
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let share = phrasings.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> =
            phrasings.chunks(share).map(|chunk| scope.spawn(move || self_test_some(engine, chunk))).collect();
        // In entry order, as a sequential run would list them; a worker
        // that panicked (nothing here panics on text) counts as one failure.
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_else(|_| vec!["self-test: a worker thread panicked".to_owned()]))
            .collect()
    })
}

/// Phrasings the self-test prepares and scans together (`scan_ahead`).
const SELF_TEST_BLOCK: usize = 64;

fn self_test_some(engine: &Engine, phrasings: &[(&str, &str)]) -> Vec<String> {
    let mut failures = Vec::new();
    let semantic = engine.semantic.as_ref().map(|(semantic, _)| semantic);
    for block in phrasings.chunks(SELF_TEST_BLOCK) {
        let mut questions: Vec<Question> =
            block.iter().map(|(_, phrasing)| Question::new(phrasing, &[], semantic)).collect();
        if let Some((_, dense)) = &engine.semantic {
            let examples = engine.meaning.as_ref().map(|meaning| meaning.rows());
            crate::question::scan_ahead(&mut questions, dense.rows(), examples);
        }
        for (&(id, phrasing), question) in block.iter().zip(&questions) {
            if let Some(failure) = self_test_one(engine, id, phrasing, question) {
                failures.push(failure);
            }
        }
    }
    failures
}

/// Why `phrasing` (prepared as `question`) fails to get its own entry `id`, if it does.
fn self_test_one(engine: &Engine, id: &str, phrasing: &str, question: &Question) -> Option<String> {
    let reply = respond_to(engine, question, THRESHOLDS);
    if reply.kind == Kind::Answer && reply.entry.as_deref() == Some(id) {
        return None;
    }
    let got = match (&reply.entry, reply.kind) {
        (Some(other), _) => format!("answer `{other}`"),
        (None, Kind::Clarify) => format!("clarify [{}]", reply.suggestions.join(", ")),
        (None, kind) => kind.as_str().to_owned(),
    };
    Some(format!("self-test: entry `{id}`: {phrasing:?} gets {got}"))
}

/// A human-readable account of how `raw` was analysed and ranked: the
/// concepts with their weights, then the top entries with coverage and score.
pub fn explain(engine: &Engine, raw: &str) -> String {
    let question = Question::new(raw, &[], engine.semantic.as_ref().map(|(semantic, _)| semantic));
    let Focus { analysis, hits } = focus(engine, &question.text);
    let judgement = crate::safety::judge(engine.safety, engine.meaning.as_ref(), &question);
    let mut out = format!("safety: {:?}\n", judgement.verdict);
    for line in engine.safety.explain(&question.full).into_iter().chain(judgement.reasons) {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("concepts:");
    for concept in &analysis.concepts {
        let alternatives: Vec<String> = concept
            .alternatives
            .iter()
            .map(|alternative| alternative.iter().map(|id| engine.index.term(*id)).collect::<Vec<_>>().join("+"))
            .collect();
        let known = if concept.is_known() { alternatives.join("|") } else { String::from("(unknown)") };
        out.push_str(&format!(" {}={:.2}[{known}]", concept.text, concept.weight));
    }
    if engine.semantic.is_some() {
        let thresholds = THRESHOLDS.hybrid;
        let candidates = candidates(engine, &question, &thresholds);
        out.push_str(&format!(
            "\ncandidates (hybrid; score = max(whole, sentence) + {} sentence + {} mean3 + {} coverage):",
            thresholds.sentence, thresholds.mean3, thresholds.lexical
        ));
        for candidate in candidates.iter().take(6) {
            out.push_str(&format!(
                "\n  {:<32} score {:.3}  whole {:.3}  sentence {:.3}  mean3 {:.3}  coverage {:.2}{}",
                engine.kb.entries[candidate.entry].id,
                candidate.score,
                candidate.whole,
                candidate.sentence,
                candidate.mean3,
                candidate.coverage,
                if candidate.exact { "  exact" } else { "" }
            ));
        }
        let id = |entry: usize| engine.kb.entries[entry].id.as_str();
        let verdict = match crate::decide::decide(&candidates, &thresholds) {
            crate::decide::Verdict::Answer { entry, reason } => format!("answer {}: {reason}", id(entry)),
            crate::decide::Verdict::Clarify { entries, reason } => {
                let ids: Vec<&str> = entries.into_iter().map(id).collect();
                format!("clarify [{}]: {reason}", ids.join(", "))
            }
            crate::decide::Verdict::NoMatch { reason } => format!("no_match: {reason}"),
        };
        let gap = match candidates.as_slice() {
            [first, second, ..] => first.score - second.score,
            _ => f32::NAN,
        };
        out.push_str(&format!(
            "\nverdict: {verdict} (an answer needs score >= {:.2} and a gap >= {:.2} to the next entry, or score >= {:.2} and a gap >= {:.2}; gap {gap:.3})",
            thresholds.answer, thresholds.gap, thresholds.lead_answer, thresholds.lead_gap
        ));
        return out;
    }
    for hit in hits {
        out.push_str(&format!(
            "\n  {:<32} coverage {:.2} evidence {:.2} score {:.2}{}",
            engine.kb.entries[hit.entry].id,
            hit.coverage,
            hit.evidence,
            hit.score,
            if hit.exact { " exact" } else { "" }
        ));
    }
    out
}

/// The retrieval ranking behind a reply (entry indexes, best first, at most
/// five), for evaluation: the hybrid candidates with the model, else Tantivy's.
pub fn ranking(engine: &Engine, raw: &str) -> Vec<usize> {
    if engine.semantic.is_some() {
        let question = Question::new(raw, &[], engine.semantic.as_ref().map(|(semantic, _)| semantic));
        return ranking_of(engine, &question);
    }
    focus(engine, crate::question::bounded(raw, MAX_QUESTION_CHARS)).hits.into_iter().map(|hit| hit.entry).collect()
}

/// The hybrid ranking of a question already analysed: at most five entries.
pub fn ranking_of(engine: &Engine, question: &Question) -> Vec<usize> {
    let mut candidates = candidates(engine, question, &THRESHOLDS.hybrid);
    candidates.truncate(5);
    candidates.into_iter().map(|candidate| candidate.entry).collect()
}

/// In a long message the question is usually the sentence with a question
/// mark: analyse that when it covers the message better than the whole.
fn focus(engine: &Engine, text: &str) -> Focus {
    let search = |analysis: Analysis| {
        let hits = engine.index.search(&analysis, 5);
        Focus { analysis, hits }
    };
    let whole = search(engine.index.analyze(text));
    let sentences: Vec<&str> = text.split_inclusive(['.', '!', '?', '\n']).collect();
    let questions: Vec<&str> =
        sentences.iter().copied().filter(|sentence| sentence.trim_end().ends_with('?')).collect();
    if questions.is_empty() || questions.len() == sentences.len() {
        return whole;
    }
    let focused = search(engine.index.analyze(&questions.concat()));
    if focused.best_coverage() > whole.best_coverage() { focused } else { whole }
}

/// The message's vectors as the decision reads them: the whole, then each
/// retrieval sentence; empty without them.
fn retrieval_vectors(question: &Question) -> Vec<crate::model::Vector> {
    match &question.vectors {
        Some(vectors) => std::iter::once(&vectors.whole).chain(&vectors.retrieval).cloned().collect(),
        None => Vec::new(),
    }
}

/// The hybrid candidates for `text`, for evaluation and `--explain`.
pub fn hybrid_candidates(
    engine: &Engine,
    text: &str,
    thresholds: &crate::decide::Hybrid,
) -> Vec<crate::decide::Candidate> {
    let question = Question::new(text, &[], engine.semantic.as_ref().map(|(semantic, _)| semantic));
    candidates(engine, &question, thresholds)
}

/// The hybrid candidates of an analysed question.
fn candidates(
    engine: &Engine,
    question: &Question,
    thresholds: &crate::decide::Hybrid,
) -> Vec<crate::decide::Candidate> {
    let analysis = engine.index.analyze(&question.text);
    crate::decide::candidates(engine, &analysis, &retrieval_vectors(question), &question.scans, thresholds)
}

fn hybrid(engine: &Engine, question: &Question, thresholds: &crate::decide::Hybrid) -> Reply {
    let kb = &engine.kb;
    if question.vectors.is_none() {
        return decide(engine, &focus(engine, &question.text), THRESHOLDS);
    }
    let candidates = candidates(engine, question, thresholds);
    let score = candidates.first().map(|candidate| candidate.score);
    match crate::decide::decide(&candidates, thresholds) {
        crate::decide::Verdict::Answer { entry, .. } => answer(kb, &kb.entries[entry], score),
        crate::decide::Verdict::Clarify { entries, .. } => clarify(kb, &entries, score),
        crate::decide::Verdict::NoMatch { .. } => no_match(kb, score),
    }
}

/// A question's analysis and its ranked hits, best first.
pub struct Focus {
    pub analysis: Analysis,
    pub hits: Vec<Hit>,
}

impl Focus {
    fn best_coverage(&self) -> f32 {
        self.hits.first().map_or(0.0, |hit| hit.coverage)
    }
}

/// Chooses answer, clarify or no_match from the ranked hits.
pub fn decide(engine: &Engine, focus: &Focus, thresholds: Thresholds) -> Reply {
    let kb = &engine.kb;
    let (analysis, hits) = (&focus.analysis, &focus.hits);
    let Some(first) = hits.first().copied() else {
        return no_match(kb, None);
    };
    let score = Some(first.score);
    let enough = first.exact
        || first.evidence >= thresholds.evidence
        || (first.coverage >= thresholds.full && first.anchored && mentions_the_domain(analysis));
    if first.coverage >= thresholds.answer && enough {
        let rivals: Vec<Hit> = hits[1..]
            .iter()
            .copied()
            .filter(|hit| hit.rank >= first.rank - thresholds.tie && hit.coverage >= first.coverage - 0.01)
            .take(2)
            .collect();
        if rivals.is_empty() || first.exact {
            return answer(kb, &kb.entries[first.entry], score);
        }
        let candidates: Vec<usize> = std::iter::once(first.entry).chain(rivals.iter().map(|hit| hit.entry)).collect();
        return clarify(kb, &candidates, score);
    }
    no_match(kb, score)
}

/// Concepts this common across the knowledge base (ketamine, PTSD, infusion)
/// say what it is about.
const DOMAIN_WEIGHT: f32 = 0.9;

/// Whether the question names the knowledge base's subject, so that a short
/// question fully covered by an entry can be answered on little evidence.
fn mentions_the_domain(analysis: &Analysis) -> bool {
    analysis.concepts.iter().any(|concept| concept.is_known() && !concept.general && concept.weight <= DOMAIN_WEIGHT)
}

/// An entry's answer, citing its sources by label.
pub fn answer(kb: &KnowledgeBase, entry: &Entry, score: Option<f32>) -> Reply {
    let sources = entry.sources.iter().filter_map(|id| kb.source(id)).map(|source| source.label.clone()).collect();
    Reply::answer(entry, sources, score)
}

fn clarify(kb: &KnowledgeBase, candidates: &[usize], score: Option<f32>) -> Reply {
    Reply {
        score,
        blocks: vec![Block::List {
            lead: kb.messages.clarify.clone(),
            items: candidates.iter().map(|index| kb.entries[*index].question.clone()).collect(),
            numbered: true,
        }],
        suggestions: candidates.iter().map(|index| kb.entries[*index].id.clone()).collect(),
        ..Reply::new(Kind::Clarify)
    }
}

fn no_match(kb: &KnowledgeBase, score: Option<f32>) -> Reply {
    Reply {
        score,
        blocks: vec![
            Block::Paragraph(kb.messages.no_answer.clone()),
            Block::List {
                lead: kb.messages.no_answer_topics.clone(),
                items: kb.topics.iter().map(|topic| topic.title.clone()).collect(),
                numbered: false,
            },
        ],
        net: Net::Pointer,
        ..Reply::new(Kind::NoMatch)
    }
}

fn plain(kind: Kind, text: String) -> Reply {
    Reply { blocks: vec![Block::Paragraph(text)], ..Reply::new(kind) }
}

/// One kind of small talk: a message of nothing but `keys` and `fillers`,
/// with at least one key, or one of `phrases`, gets the message `pick`
/// chooses.
struct Smalltalk {
    keys: &'static [&'static str],
    fillers: &'static [&'static str],
    phrases: &'static [&'static str],
    pick: fn(&crate::knowledge::Messages) -> &String,
}

/// Words that go with any kind of small talk ("cheers mate", "morning all").
const ADDRESSED: &[&str] = &["bot", "mate", "all", "everyone", "folks", "again", "ok", "okay"];

const SMALLTALK: &[Smalltalk] = &[
    Smalltalk {
        keys: &["thanks", "thank", "thx", "ty", "tysm", "cheers", "appreciate", "appreciated", "helpful"],
        fillers: &[
            "it", "that", "thats", "this", "so", "very", "much", "a", "lot", "bunch", "great", "you", "youve", "cool",
            "nice", "got", "perfect", "helped", "helps", "really", "was", "has", "been", "info", "answer", "answers",
            "for", "the", "your", "help",
        ],
        phrases: &[],
        pick: |messages| &messages.thanks,
    },
    Smalltalk {
        keys: &["bye", "goodbye", "later", "cya", "night", "goodnight", "ttyl", "farewell"],
        fillers: &["see", "you", "good", "take", "care", "for", "now", "then", "thanks", "thank"],
        phrases: &["have a good one", "have a good day", "have a nice day", "have a good night"],
        pick: |messages| &messages.goodbye,
    },
    Smalltalk {
        keys: &[
            "hi",
            "hello",
            "hey",
            "heya",
            "hiya",
            "howdy",
            "yo",
            "morning",
            "afternoon",
            "evening",
            "greetings",
            "sup",
        ],
        fillers: &["good", "there", "how", "are", "you", "doing", "whats", "up"],
        phrases: &[],
        pick: |messages| &messages.greeting,
    },
];

/// Longer messages are never small talk: they say something more.
const SMALLTALK_WORDS: usize = 8;

/// A reply when the whole message is a greeting, thanks, goodbye or a
/// command to stop.
fn smalltalk(normalised: &str, kb: &KnowledgeBase) -> Option<Reply> {
    if crate::text::is_bot_command(normalised) {
        // The bot only ever replies, so "stop" is a goodbye.
        return Some(plain(Kind::Smalltalk, kb.messages.goodbye.clone()));
    }
    let words: Vec<&str> = normalised.split(' ').collect();
    if words.len() > SMALLTALK_WORDS {
        return None;
    }
    let among = |list: &[&str], word: &str| list.iter().any(|item| unstretched(item).eq(unstretched(word)));
    let kind = SMALLTALK.iter().find(|kind| {
        kind.phrases.contains(&normalised)
            || (words.iter().all(|word| among(kind.keys, word) || among(kind.fillers, word) || among(ADDRESSED, word))
                && words.iter().any(|word| among(kind.keys, word)))
    })?;
    Some(plain(Kind::Smalltalk, (kind.pick)(&kb.messages).clone()))
}

/// A word's letters with each run of one letter cut to a single letter, so
/// that "heyyy", "byee" and "goodnight" compare as "hey", "bye", "godnight".
fn unstretched(word: &str) -> impl Iterator<Item = char> + '_ {
    let mut last = None;
    word.chars().filter(move |&ch| last.replace(ch) != Some(ch))
}
