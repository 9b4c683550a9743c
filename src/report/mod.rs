//! What curators read about the questions the bot could not answer: the
//! stored unanswered questions grouped by meaning (sentence vectors,
//! average-linkage clustering in `cluster.rs`), each group with a
//! representative question, the nearest entry and that entry's 👎 count.
//! `render.rs` lays this out for `faqbot report` and `/unanswered`;
//! `suggest.rs` writes `faqbot suggest`'s review file.
//!
//! It never changes the knowledge base and stores nothing: user texts are
//! embedded but never stored in the vector cache, so no trace of them
//! outlives the database's retention. Texts the safety screen now calls a crisis are left
//! out, even if an older screen let them be stored.

mod cluster;
mod render;
mod suggest;

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use rusqlite::Connection;

use crate::engine::Engine;
use crate::model::{Vector, cosine};
use crate::question::Question;
use crate::safety::Verdict;

pub use cluster::average_linkage;
pub use render::{render, render_bounded};
pub use suggest::{CLOSE, NewEntry, SuggestOptions, Suggestions, suggest, write_atomically, write_suggestions};

/// Two groups of questions merge while the mean cosine between their
/// members (vectors of the text without the domain's words) is at least
/// this. Chosen on `tests/data/unanswered/six-topics.txt` and checked on
/// `five-topics.txt`, never tuned on; figures in ARCHITECTURE.md.
pub const GROUP_THRESHOLD: f32 = 0.30;
/// A group of fewer than `SMALL_GROUP` distinct questions joins the closest
/// larger group when their mean cosine is at least this: a wording or two
/// that average linkage left alone is far more often a variant of a topic
/// already shown than a topic of its own.
pub const ABSORB_THRESHOLD: f32 = 0.10;
const SMALL_GROUP: usize = 3;
/// A word in at least this share of the knowledge base's phrasings names the
/// domain ("ketamine", "infusion", "after"), not a topic within it; it is
/// left out of the text clustered so that topics, not the domain, set the
/// distance. Nearest entries still use the whole text.
pub const DOMAIN_WORD_SHARE: f32 = 0.03;
/// At most this many distinct questions are grouped by meaning (the most
/// frequent); clustering costs their count squared.
pub const MAX_GROUPED: usize = 2000;
/// Texts are embedded this many at a time.
const BATCH: usize = 64;

/// One distinct question (by normalised text) and how often it was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    /// The most frequent form as typed (on a tie, the first in text order).
    pub text: String,
    pub normalised: String,
    pub count: usize,
    /// Its own nearest entry (index) and cosine, with the model.
    pub nearest: Option<(usize, f32)>,
}

/// How questions were grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// By the sentence vectors: questions that mean the same are one group.
    Meaning,
    /// Without the model: one group per distinct normalised text.
    Text,
}

/// The entry closest to a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearest {
    pub entry: String,
    /// With the model, the members' mean cosine to the entry's closest
    /// phrasing; without it, the share of the words the entry covers.
    pub score: f32,
    /// 👎 the entry has received.
    pub dislikes: i64,
}

/// Questions that mean the same thing.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// How many times its questions were asked, repeats included.
    pub count: usize,
    /// The member closest to the group's centre, as typed.
    pub example: String,
    /// Most frequent first.
    pub members: Vec<Asked>,
    pub nearest: Option<Nearest>,
}

/// The unanswered questions of a period, grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub method: Method,
    pub days: u32,
    /// Most frequent first.
    pub groups: Vec<Group>,
    /// Questions asked (repeats included) across all groups.
    pub questions: usize,
    /// Stored texts left out because the safety screen calls them a crisis.
    pub screened_out: usize,
    /// Distinct questions beyond `MAX_GROUPED`, left ungrouped.
    pub not_grouped: usize,
}

/// Reads the last `days` days of unanswered questions and groups them with
/// `engine` (by meaning when it has the model). Fails only if the database
/// cannot be read or the model fails on the texts.
pub fn unanswered(engine: &Engine, connection: &Connection, now: SystemTime, days: u32) -> anyhow::Result<Grouping> {
    use anyhow::Context;
    let rows = crate::store::unanswered_texts(connection, now, days).context("reading the unanswered questions")?;
    let dislikes = crate::store::dislikes(connection).context("reading the feedback")?;
    group(engine, rows, &dislikes, days)
}

/// Groups stored questions (`(normalised, as typed, count)` rows): see
/// `unanswered`.
pub fn group(
    engine: &Engine,
    rows: Vec<(String, String, i64)>,
    dislikes: &HashMap<String, i64>,
    days: u32,
) -> anyhow::Result<Grouping> {
    let (mut asked, screened_out) = distinct(engine, rows);
    asked.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.text.cmp(&b.text)));
    let not_grouped = asked.len().saturating_sub(MAX_GROUPED);
    asked.truncate(MAX_GROUPED);
    let (method, mut groups) = match &engine.semantic {
        Some((semantic, dense)) => {
            // One `Question` per text, as a reply would read it: its whole
            // vector finds the closeness, and the same vectors rank it.
            let mut vectors = Vec::with_capacity(asked.len());
            for item in &mut asked {
                let question = Question::new(&item.text, &[], Some(semantic));
                let Some(analysed) = &question.vectors else {
                    anyhow::bail!("the embedding model failed on a stored question");
                };
                item.nearest = own_nearest(engine, &question, &dense.closeness(&analysed.whole));
                vectors.push(analysed.whole.clone());
            }
            let domain = domain_words(&engine.kb);
            let topical: Vec<String> = asked.iter().map(|item| without_domain_words(&item.text, &domain)).collect();
            let topical: Vec<&str> = topical.iter().map(String::as_str).collect();
            let topical = embed(semantic, &topical)?;
            (Method::Meaning, by_meaning(engine, asked, (&topical, &vectors), dislikes))
        }
        None => (Method::Text, by_text(engine, asked, dislikes)),
    };
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.example.cmp(&b.example)));
    let questions = groups.iter().map(|group| group.count).sum();
    Ok(Grouping { method, days, groups, questions, screened_out, not_grouped })
}

/// Folds rows into distinct questions by normalised text, leaving out what
/// the safety screen calls a crisis; also returns how many were left out.
fn distinct(engine: &Engine, rows: Vec<(String, String, i64)>) -> (Vec<Asked>, usize) {
    let mut by_normalised: HashMap<String, (Asked, usize)> = HashMap::new();
    let mut screened_out = 0;
    for (normalised, text, count) in rows {
        let count = usize::try_from(count).unwrap_or(0);
        if count == 0 {
            continue;
        }
        if matches!(engine.safety.screen(&text), Verdict::Crisis(_)) {
            screened_out += count;
            continue;
        }
        let slot = by_normalised.entry(normalised.clone()).or_insert_with(|| {
            (Asked { text: text.clone(), normalised: normalised.clone(), count: 0, nearest: None }, 0)
        });
        // The form typed most often stands for the others.
        let (asked, top) = slot;
        if count > *top || (count == *top && text < asked.text) {
            asked.text = text;
            *top = count;
        }
        asked.count += count;
    }
    (by_normalised.into_values().map(|(asked, _)| asked).collect(), screened_out)
}

/// The vectors of the texts, in batches, never stored in the vector cache.
fn embed(semantic: &crate::model::Semantic, texts: &[&str]) -> anyhow::Result<Vec<Vector>> {
    let mut vectors = Vec::with_capacity(texts.len());
    for batch in texts.chunks(BATCH) {
        vectors.extend(semantic.embed_batch(batch)?);
    }
    Ok(vectors)
}

/// Lower-case runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).map(str::to_lowercase)
}

/// Words found in at least `DOMAIN_WORD_SHARE` of the phrasings of `kb`.
fn domain_words(kb: &crate::knowledge::KnowledgeBase) -> HashSet<String> {
    let mut phrasings = 0usize;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for entry in &kb.entries {
        for phrasing in entry.phrasings() {
            phrasings += 1;
            let distinct: HashSet<String> = words(phrasing).collect();
            for word in distinct {
                *counts.entry(word).or_default() += 1;
            }
        }
    }
    let floor = (DOMAIN_WORD_SHARE * phrasings as f32).ceil().max(2.0) as usize;
    counts.into_iter().filter(|(_, count)| *count >= floor).map(|(word, _)| word).collect()
}

/// The text's words minus the domain's; the text itself when nothing else
/// is left.
fn without_domain_words(text: &str, domain: &HashSet<String>) -> String {
    let kept: Vec<String> = words(text).filter(|word| !domain.contains(word)).collect();
    if kept.is_empty() { text.to_owned() } else { kept.join(" ") }
}

/// Clusters, then lets each group of fewer than `SMALL_GROUP` members join
/// the closest larger group if close enough (smallest first).
fn clusters(vectors: &[Vector]) -> Vec<Vec<usize>> {
    let mut clusters = average_linkage(vectors, GROUP_THRESHOLD);
    let mean = |a: &[usize], b: &[usize]| -> f32 {
        let mut sum = 0.0;
        for &i in a {
            for &j in b {
                if let (Some(x), Some(y)) = (vectors.get(i), vectors.get(j)) {
                    sum += cosine(x, y);
                }
            }
        }
        sum / (a.len() * b.len()).max(1) as f32
    };
    let mut small: Vec<usize> = (0..clusters.len()).filter(|&at| clusters[at].len() < SMALL_GROUP).collect();
    small.sort_by_key(|&at| (clusters[at].len(), clusters[at].first().copied()));
    let mut absorbed = vec![false; clusters.len()];
    for at in small {
        let closest = (0..clusters.len())
            .filter(|&other| clusters[other].len() >= SMALL_GROUP)
            .map(|other| (other, mean(&clusters[at], &clusters[other])))
            .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
        if let Some((into, score)) = closest
            && score >= ABSORB_THRESHOLD
        {
            let moved = std::mem::take(&mut clusters[at]);
            clusters[into].extend(moved);
            absorbed[at] = true;
        }
    }
    let mut kept: Vec<Vec<usize>> =
        clusters.into_iter().zip(absorbed).filter(|(_, gone)| !gone).map(|(cluster, _)| cluster).collect();
    for cluster in &mut kept {
        cluster.sort_unstable();
    }
    kept
}

/// A question's own nearest entry, with its cosine: the first of the
/// answer engine's hybrid ranking (words and meaning), which places a
/// question better than the closest phrasing alone; that closest phrasing
/// when the ranking is empty.
fn own_nearest(engine: &Engine, question: &Question, closeness: &[crate::search::Closeness]) -> Option<(usize, f32)> {
    let cosine_of = |entry: usize| closeness.iter().find(|close| close.entry == entry).map(|close| close.cosine);
    match crate::responder::ranking_of(engine, question).first() {
        Some(&entry) => Some((entry, cosine_of(entry).unwrap_or(0.0))),
        None => closeness.iter().max_by(|a, b| a.cosine.total_cmp(&b.cosine)).map(|best| (best.entry, best.cosine)),
    }
}

/// A question with its two vectors: `topical` (without the domain's words)
/// groups it, `whole` finds its nearest entry.
struct Member<'a> {
    asked: Asked,
    topical: &'a Vector,
    whole: &'a Vector,
}

fn by_meaning(
    engine: &Engine,
    asked: Vec<Asked>,
    (topical, whole): (&[Vector], &[Vector]),
    dislikes: &HashMap<String, i64>,
) -> Vec<Group> {
    let clusters = clusters(topical);
    let mut slots: Vec<Option<Asked>> = asked.into_iter().map(Some).collect();
    let mut groups = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        let members: Vec<Member> = cluster
            .iter()
            .filter_map(|&index| {
                Some(Member {
                    asked: slots.get_mut(index)?.take()?,
                    topical: topical.get(index)?,
                    whole: whole.get(index)?,
                })
            })
            .collect();
        if let Some(group) = meaning_group(engine, members, dislikes) {
            groups.push(group);
        }
    }
    groups
}

/// One group by meaning: its representative and its nearest entry.
fn meaning_group(engine: &Engine, members: Vec<Member>, dislikes: &HashMap<String, i64>) -> Option<Group> {
    let dimensions = members.first()?.topical.len();
    let mut centre = vec![0.0f32; dimensions];
    for member in &members {
        for (sum, value) in centre.iter_mut().zip(member.topical.iter()) {
            *sum += value * member.asked.count as f32;
        }
    }
    // Closest to the (count-weighted) centre; then the more frequent.
    let example = members
        .iter()
        .max_by(|a, b| {
            cosine(a.topical, &centre)
                .total_cmp(&cosine(b.topical, &centre))
                .then_with(|| a.asked.count.cmp(&b.asked.count))
        })
        .map(|member| member.asked.text.clone())?;
    let nearest = nearest_by_meaning(engine, &members, dislikes);
    let mut members: Vec<Asked> = members.into_iter().map(|member| member.asked).collect();
    members.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.text.cmp(&b.text)));
    let count = members.iter().map(|asked| asked.count).sum();
    Some(Group { count, example, members, nearest })
}

/// The entry that most members (count-weighted) have as their own nearest;
/// a tie goes to the better mean cosine over the members. A vote, because a
/// mean lets one entry that is fairly close to every member beat the entry
/// that is the closest for most of them.
fn nearest_by_meaning(engine: &Engine, members: &[Member], dislikes: &HashMap<String, i64>) -> Option<Nearest> {
    let (_, dense) = engine.semantic.as_ref()?;
    let mut sums = vec![0.0f32; engine.kb.entries.len()];
    let mut votes = vec![0usize; engine.kb.entries.len()];
    let mut weight = 0.0f32;
    for member in members {
        for closeness in dense.closeness(member.whole) {
            if let Some(sum) = sums.get_mut(closeness.entry) {
                *sum += closeness.cosine * member.asked.count as f32;
            }
        }
        if let Some(vote) = member.asked.nearest.and_then(|(entry, _)| votes.get_mut(entry)) {
            *vote += member.asked.count;
        }
        weight += member.asked.count as f32;
    }
    let index = (0..sums.len()).max_by(|&a, &b| votes[a].cmp(&votes[b]).then_with(|| sums[a].total_cmp(&sums[b])))?;
    nearest(engine, index, sums[index] / weight.max(1.0), dislikes)
}

fn nearest(engine: &Engine, index: usize, score: f32, dislikes: &HashMap<String, i64>) -> Option<Nearest> {
    let entry = engine.kb.entries.get(index)?;
    Some(Nearest { entry: entry.id.clone(), score, dislikes: dislikes.get(&entry.id).copied().unwrap_or(0) })
}

/// Without the model: one group per distinct text, nearest entry by words.
fn by_text(engine: &Engine, asked: Vec<Asked>, dislikes: &HashMap<String, i64>) -> Vec<Group> {
    asked
        .into_iter()
        .map(|asked| {
            let analysis = engine.index.analyze(&asked.text);
            let nearest = engine
                .index
                .search(&analysis, 1)
                .first()
                .and_then(|hit| nearest(engine, hit.entry, hit.coverage, dislikes));
            Group { count: asked.count, example: asked.text.clone(), members: vec![asked], nearest }
        })
        .collect()
}

/// Room for `/unanswered`'s list in one Telegram message (4096), leaving
/// space for the clinician note the reply ends with.
pub const TELEGRAM_BUDGET: usize = 3500;

/// `/unanswered [days]`: the groups of the last `days` days, within one
/// Telegram message. A failure is reported as the text, never a panic.
pub fn for_telegram(engine: &Engine, store: &crate::store::Store, days: u32) -> String {
    let now = SystemTime::now();
    // Read, then let go of the database before embedding: the writer and the
    // inbox share its connection.
    let read = store.read(|connection| {
        Ok((crate::store::unanswered_texts(connection, now, days)?, crate::store::dislikes(connection)?))
    });
    let grouped = read.and_then(|(rows, dislikes)| group(engine, rows, &dislikes, days));
    match grouped {
        Ok(grouping) => render_bounded(&grouping, TELEGRAM_BUDGET),
        Err(error) => format!("Reading the unanswered questions failed: {error:#}"),
    }
}

/// `faqbot suggest`: groups the last `days` days and writes the review file.
/// Fails (exit 2) without the model, or when the file may not be written.
pub fn run_suggest(
    engine: &Engine,
    connection: &Connection,
    origin: &str,
    days: u32,
    options: &SuggestOptions,
) -> anyhow::Result<String> {
    if engine.semantic.is_none() {
        anyhow::bail!(
            "suggest groups questions by meaning and needs the embedding model: run `faqbot model fetch`, or use `faqbot report` to list them by text"
        );
    }
    let grouping = unanswered(engine, connection, SystemTime::now(), days)?;
    let suggestions = suggest(engine, &grouping, options.min_count);
    if suggestions.alternates.is_empty() && suggestions.entries.is_empty() {
        return Ok(format!(
            "nothing to suggest: no group of at least {} question(s) with new phrasings in the last {days} day(s); no file written",
            options.min_count
        ));
    }
    write_suggestions(&suggest::to_toml(engine, &grouping, &suggestions, origin), options)?;
    Ok(suggest::summary(&suggestions, &options.out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(x: f32, y: f32, z: f32) -> Vector {
        let norm = (x * x + y * y + z * z).sqrt();
        vec![x / norm, y / norm, z / norm]
    }

    #[test]
    fn a_stray_question_joins_the_closest_group_only_when_close_enough() {
        let vectors = [
            unit(1.0, 0.0, 0.0),
            unit(1.0, 0.1, 0.0),
            unit(1.0, 0.0, 0.1),
            unit(0.0, 1.0, 0.0),
            unit(0.1, 1.0, 0.0),
            unit(0.0, 1.0, 0.1),
            // Near the first group, though not near enough to be clustered with it.
            unit(0.25, 0.0, 1.0),
            // Far from both: it stays a group of its own.
            unit(-1.0, -1.0, 0.0),
        ];
        assert_eq!(clusters(&vectors), [vec![0, 1, 2, 6], vec![3, 4, 5], vec![7]]);
    }

    #[test]
    fn domain_words_are_left_out_unless_nothing_else_is_left() {
        let domain: HashSet<String> = ["ketamine", "after", "my"].into_iter().map(str::to_owned).collect();
        assert_eq!(without_domain_words("Coffee after my Ketamine?", &domain), "coffee");
        assert_eq!(without_domain_words("ketamine after", &domain), "ketamine after");
    }
}
