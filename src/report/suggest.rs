//! `faqbot suggest`: from grouped unanswered questions, a review file in the
//! knowledge TOML syntax. A group close to an entry becomes proposed
//! `alternates` for it; a group far from every entry becomes an `[[entry]]`
//! skeleton whose empty answer and sources `check` rejects, so the file can
//! never be loaded by accident.
//!
//! It never writes into the knowledge directory and never overwrites a file
//! unless asked: a curator copies from it by hand.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{Group, Grouping, Method};
use crate::engine::Engine;
use crate::import::id_from;
use crate::import::write::basic;
use crate::text::normalize;

/// A group whose members are on average at least this close (cosine) to an
/// entry's phrasings asks what that entry answers: its phrasings are proposed
/// as alternates. Further away, it becomes a new entry. Chosen on the
/// fixtures in `tests/data/unanswered/`.
pub const CLOSE: f32 = 0.5;
/// At most this many phrasings are proposed per entry.
const MAX_PROPOSED: usize = 12;

/// What `suggest` may write, and from which groups.
#[derive(Debug, Clone)]
pub struct SuggestOptions {
    pub out: PathBuf,
    pub force: bool,
    /// Groups asked fewer times than this are left out.
    pub min_count: usize,
    /// The knowledge directory, which is never written into.
    pub knowledge: PathBuf,
}

/// The proposals, before they are written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suggestions {
    /// Per existing entry: (entry id, the group's score, times asked, phrasings).
    pub alternates: Vec<(String, f32, usize, Vec<String>)>,
    /// New entry skeletons, most asked first.
    pub entries: Vec<NewEntry>,
}

/// A proposed entry: the group's representative as its question, the
/// group's other phrasings as alternates.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub id: String,
    pub question: String,
    pub alternates: Vec<String>,
    pub asked: usize,
    pub nearest: Option<(String, f32)>,
}

/// Turns the groups asked at least `min_count` times into proposals.
/// Phrasings the knowledge base already has (after normalising, as `check`
/// compares them) are never proposed again.
pub fn suggest(engine: &Engine, grouping: &Grouping, min_count: usize) -> Suggestions {
    let kb = &engine.kb;
    let mut known: HashSet<String> =
        kb.entries.iter().flat_map(crate::knowledge::Entry::phrasings).map(normalize).collect();
    let mut ids: HashSet<String> = kb.entries.iter().map(|entry| entry.id.clone()).collect();
    let mut out = Suggestions::default();
    for group in grouping.groups.iter().filter(|group| group.count >= min_count.max(1)) {
        let close = group.nearest.as_ref().filter(|nearest| nearest.score >= CLOSE);
        match close {
            Some(nearest) => {
                let Some(index) = kb.entries.iter().position(|entry| entry.id == nearest.entry) else { continue };
                // Only phrasings whose own nearest entry is this one.
                let phrasings = fresh(group, &mut known, |asked| asked.nearest.map(|(entry, _)| entry) == Some(index));
                if phrasings.is_empty() {
                    continue;
                }
                match out.alternates.iter_mut().find(|(id, ..)| *id == nearest.entry) {
                    Some((_, _, asked, existing)) => {
                        *asked += group.count;
                        existing.extend(phrasings);
                        existing.truncate(MAX_PROPOSED);
                    }
                    None => out.alternates.push((nearest.entry.clone(), nearest.score, group.count, phrasings)),
                }
            }
            None => {
                let mut phrasings = fresh(group, &mut known, |_| true);
                if phrasings.is_empty() {
                    continue;
                }
                // The representative becomes the question when it is new.
                let question = match phrasings.iter().position(|text| *text == group.example) {
                    Some(at) => phrasings.remove(at),
                    None => phrasings.remove(0),
                };
                let base = format!("new-{}", id_from(&question, "entry"));
                let id = unique_id(&base, &mut ids);
                let nearest = group.nearest.as_ref().map(|nearest| (nearest.entry.clone(), nearest.score));
                out.entries.push(NewEntry { id, question, alternates: phrasings, asked: group.count, nearest });
            }
        }
    }
    out
}

/// The group's phrasings (most frequent first) that pass `keep` and that
/// neither the knowledge base nor an earlier proposal has; marks them known.
fn fresh(group: &Group, known: &mut HashSet<String>, keep: impl Fn(&super::Asked) -> bool) -> Vec<String> {
    group
        .members
        .iter()
        .filter(|asked| keep(asked))
        .filter(|asked| known.insert(asked.normalised.clone()))
        .map(|asked| asked.text.split_whitespace().collect::<Vec<_>>().join(" "))
        .take(MAX_PROPOSED)
        .collect()
}

/// `base` cut to the 40 characters `check` allows, made unique.
fn unique_id(base: &str, taken: &mut HashSet<String>) -> String {
    let trim = |id: &str, max: usize| id.chars().take(max).collect::<String>().trim_end_matches('-').to_owned();
    let mut candidate = trim(base, 40);
    let mut number = 2;
    while taken.contains(&candidate) {
        let suffix = format!("-{number}");
        candidate = format!("{}{suffix}", trim(base, 40 - suffix.len()));
        number += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// The review file's text.
pub fn to_toml(engine: &Engine, grouping: &Grouping, suggestions: &Suggestions, origin: &str) -> String {
    let kb = &engine.kb;
    let mut text = format!(
        "# Proposed by `faqbot suggest` from {} unanswered question(s) of the last {} day(s) ({origin}).\n\
         # A review file: nothing here is applied, and `faqbot check` would reject it as it is.\n\
         # Copy what fits into knowledge/faq/*.toml by hand, then run `faqbot check`.\n\
         # These are users' own words: read each before copying, and leave out anything personal.\n",
        grouping.questions, grouping.days
    );
    if grouping.method == Method::Text {
        text.push_str("# Grouped by exact text only: the embedding model was not loaded.\n");
    }
    if !suggestions.alternates.is_empty() {
        text.push_str(
            "\n# ── Alternates for existing entries ──\n\
             # Add each phrasing you agree with to that entry's `alternates`.\n",
        );
    }
    for (id, score, asked, phrasings) in &suggestions.alternates {
        let topic = kb
            .entry(id)
            .and_then(|entry| kb.topics.get(entry.topic))
            .map_or_else(String::new, |topic| format!(", topic {:?}", topic.id));
        let _ = write!(
            text,
            "\n# Asked {asked} time(s); similarity {score:.2}{topic}.\n[[alternates]]\nentry = {}\nalternates = [\n",
            basic(id)
        );
        for phrasing in phrasings {
            let _ = writeln!(text, "  {},", basic(phrasing));
        }
        text.push_str("]\n");
    }
    if !suggestions.entries.is_empty() {
        text.push_str(
            "\n# ── New entries ──\n\
             # Far from every entry. Write the answer and cite sources before moving one into a topic file.\n",
        );
    }
    for entry in &suggestions.entries {
        let nearest =
            entry.nearest.as_ref().map_or_else(String::new, |(id, score)| format!("; nearest entry: {id}, {score:.2}"));
        let _ = write!(
            text,
            "\n# Asked {} time(s){nearest}.\n[[entry]]\nid = {}\nquestion = {}\nalternates = [\n",
            entry.asked,
            basic(&entry.id),
            basic(&entry.question)
        );
        for phrasing in &entry.alternates {
            let _ = writeln!(text, "  {},", basic(phrasing));
        }
        text.push_str(
            "]\nanswer = \"\"  # TODO: the answer, in plain words (at most about 1,200 characters); `check` rejects it empty\n\
             sources = []  # TODO: ids from sources.toml; `check` needs at least one\n",
        );
        if let Some((related, _)) = &entry.nearest {
            let _ = writeln!(text, "related = [{}]", basic(related));
        }
    }
    text
}

/// Writes `text` to `options.out`: never inside the knowledge directory,
/// never over an existing file without `force`. Fails with the reason.
pub fn write_suggestions(text: &str, options: &SuggestOptions) -> anyhow::Result<()> {
    let out = &options.out;
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = parent
        .canonicalize()
        .with_context(|| format!("the directory of {} does not exist; create it or pass --out FILE", out.display()))?;
    if let Ok(knowledge) = options.knowledge.canonicalize()
        && parent.starts_with(&knowledge)
    {
        bail!(
            "{} is inside the knowledge directory {}: suggestions are never written there; pass --out FILE elsewhere",
            out.display(),
            options.knowledge.display()
        );
    }
    if out.exists() && !options.force {
        bail!("{} already exists; pass --force to replace it, or --out FILE", out.display());
    }
    write_atomically(out, text.as_bytes())
}

/// Writes `bytes` to `out` through a temporary file beside it, renamed into
/// place: a reader (or a build including it) never sees half a file.
pub fn write_atomically(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let parent = out.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    std::io::Write::write_all(&mut file, bytes).with_context(|| format!("writing {}", out.display()))?;
    file.persist(out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// A one-line summary of what was proposed.
pub fn summary(suggestions: &Suggestions, out: &Path) -> String {
    let phrasings: usize = suggestions.alternates.iter().map(|(.., phrasings)| phrasings.len()).sum();
    format!(
        "wrote {}: {phrasings} alternate(s) for {} existing entr(y/ies), {} new entry skeleton(s); review it, copy what fits into knowledge/, then run `faqbot check`",
        out.display(),
        suggestions.alternates.len(),
        suggestions.entries.len()
    )
}
