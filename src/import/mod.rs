//! `faqbot import`: turns an FAQ kept elsewhere (CSV, TSV or JSON, as hosted
//! FAQ and QnA services export them, or as `faqbot export` writes them) into a
//! knowledge directory that loads: `faq/*.toml`, `sources.toml`, and the
//! messages and synonyms of a template knowledge base.
//!
//! It fixes what has one sensible fix (rows with identical answers become one
//! entry, a phrasing asked twice is kept once on its first entry, ids are made
//! unique kebab-case, answers over Telegram's limit are split at paragraph
//! breaks) and reports everything else with the line of the input it came
//! from. It never edits an existing knowledge base in place and never decides
//! what an answer should say.

mod read;
pub(crate) mod write;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::knowledge::{self, Entry, KnowledgeBase, LoadError, Messages, Source, TELEGRAM_LIMIT, Topic};
use crate::text::normalize;

/// The formats `import` reads and `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Tsv,
    Json,
}

impl Format {
    /// The format a file's extension names (`.csv`, `.tsv`/`.tab`, `.json`).
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Self::Csv),
            "tsv" | "tab" => Some(Self::Tsv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Where in the input something came from: a 1-based line, and for JSON the
/// 0-based index of the item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    pub line: usize,
    pub item: Option<usize>,
}

/// A problem the import could not fix, at the place in the input it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    pub path: PathBuf,
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.path.display(), self.origin.line)?;
        if let Some(item) = self.origin.item {
            write!(f, "item {item}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// How to import.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    /// The knowledge directory to write.
    pub out: PathBuf,
    /// The knowledge base whose `messages.toml`, `synonyms.toml` and sources
    /// are reused (sources named by id in the input are looked up here).
    pub template: PathBuf,
    /// Replace `faq/*.toml` and `sources.toml` if `out` already has them.
    pub force: bool,
}

/// What the import did.
#[derive(Debug, Default)]
pub struct Report {
    /// Problems in the input that were not fixed, in input order.
    pub problems: Vec<InputProblem>,
    /// Problems `faqbot check` finds in what was written (each also follows
    /// from an input problem, e.g. an entry without a source).
    pub check_problems: Vec<knowledge::Problem>,
    /// Things worth knowing that are not problems (ignored columns).
    pub notes: Vec<String>,
    /// The files written; empty when nothing could be imported.
    pub written: Vec<PathBuf>,
    pub stats: Stats,
}

impl Report {
    /// True when everything was imported and the result loads.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.check_problems.is_empty() && !self.written.is_empty()
    }
}

/// Counts for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub rows: usize,
    pub entries: usize,
    pub topics: usize,
    pub sources: usize,
    /// Rows folded into an earlier row with the same answer.
    pub merged_rows: usize,
    /// Phrasings left out because an earlier entry (or the same one) has them.
    pub repeated_phrasings: usize,
    /// Answers split because they were over Telegram's limit, and the entries that made.
    pub split_answers: usize,
    pub split_parts: usize,
    /// Ids that were missing, invalid or taken and were made anew.
    pub new_ids: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} row(s) → {} entries in {} topic(s), {} source(s); merged {} row(s) with an identical answer, left out {} repeated phrasing(s), split {} long answer(s) into {} entries, made {} id(s)",
            self.rows,
            self.entries,
            self.topics,
            self.sources,
            self.merged_rows,
            self.repeated_phrasings,
            self.split_answers,
            self.split_parts,
            self.new_ids
        )
    }
}

/// The title of the one topic used when the input names none.
pub const DEFAULT_TOPIC_TITLE: &str = "Frequently asked questions";
const DEFAULT_TOPIC_ID: &str = "faq";
const MAX_ID: usize = 40;

/// Imports `input` into `options.out`.
///
/// `Err` when it could not run: the input or template cannot be read, the
/// target already holds a knowledge base (without `force`), or writing
/// failed. Problems in the input are in the report, not errors.
pub fn import(input: &Path, options: &Options) -> anyhow::Result<Report> {
    let bytes = fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = error.utf8_error().valid_up_to();
            let line = error.as_bytes().iter().take(valid).filter(|&&byte| byte == b'\n').count() + 1;
            bail!("{}:{line}: not UTF-8 text; save the file as UTF-8 and import it again", input.display());
        }
    };
    let template = knowledge::load(&options.template).with_context(|| {
        format!(
            "loading the template knowledge base {} (its messages.toml, synonyms.toml and sources are reused); pass --knowledge DIR",
            options.template.display()
        )
    })?;
    check_target(&options.out, options.force)?;

    let converted = convert(read::read(&text, options.format), &template);
    let mut report = Report {
        problems: converted
            .problems
            .into_iter()
            .map(|(origin, message)| InputProblem { path: input.to_path_buf(), origin, message })
            .collect(),
        notes: converted.notes,
        stats: converted.stats,
        ..Report::default()
    };
    // In the order of the input, as an editor would walk through them.
    report.problems.sort_by_key(|problem| (problem.origin.line, problem.origin.item));
    if converted.entries.is_empty() {
        return Ok(report);
    }
    let origin = input.file_name().map_or_else(|| input.display().to_string(), |name| name.to_string_lossy().into());
    let files = write::files(&converted.topics, &converted.entries, &converted.sources, &origin);
    report.written = write_files(&options.out, files, &options.template, options.force)?;
    match knowledge::load(&options.out) {
        Ok(_) => {}
        Err(LoadError::Invalid(problems)) => report.check_problems = problems.problems,
        Err(error @ LoadError::Io { .. }) => return Err(error.into()),
    }
    Ok(report)
}

/// Refuses to mix an import into an existing knowledge base unless asked.
fn check_target(out: &Path, force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let has_faq = fs::read_dir(out.join("faq")).is_ok_and(|mut items| {
        items.any(|item| item.is_ok_and(|item| item.path().extension().is_some_and(|ext| ext == "toml")))
    });
    if has_faq || out.join("sources.toml").exists() {
        bail!(
            "{} already holds a knowledge base; import into a new directory with --out DIR, or pass --force to replace its faq/*.toml and sources.toml",
            out.display()
        );
    }
    Ok(())
}

fn write_files(
    out: &Path,
    files: Vec<(PathBuf, String)>,
    template: &Path,
    force: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let faq = out.join("faq");
    fs::create_dir_all(&faq).with_context(|| format!("cannot create {}", faq.display()))?;
    if force {
        let items = fs::read_dir(&faq).with_context(|| format!("cannot read {}", faq.display()))?;
        for item in items {
            let path = item.with_context(|| format!("cannot read {}", faq.display()))?.path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = out.join(relative);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    // The messages and synonyms are the bot's own words: kept when the
    // target has them, else copied so that the result loads.
    for name in ["messages.toml", "synonyms.toml"] {
        let target = out.join(name);
        if target.exists() {
            continue;
        }
        let from = template.join(name);
        fs::copy(&from, &target).with_context(|| format!("cannot copy {} to {}", from.display(), target.display()))?;
        written.push(target);
    }
    Ok(written)
}

/// What `convert` makes of the records: a knowledge base's parts, and what it could not fix.
#[derive(Debug, Default)]
struct Converted {
    topics: Vec<Topic>,
    entries: Vec<Entry>,
    sources: Vec<Source>,
    problems: Vec<(Origin, String)>,
    notes: Vec<String>,
    stats: Stats,
}

/// An entry on its way: cells still as the input gave them.
#[derive(Debug, Clone)]
struct Draft {
    origin: Origin,
    id: Option<String>,
    topic: usize,
    question: String,
    alternates: Vec<String>,
    answer: String,
    sources: Vec<String>,
    related: Vec<String>,
    crisis_resources: bool,
}

/// Turns records into entries; pure, so every rule is testable without files.
fn convert(read: read::Read, template: &KnowledgeBase) -> Converted {
    let mut out = Converted { problems: read.problems, notes: read.notes, ..Converted::default() };
    out.stats.rows = read.records.len();
    let drafts = merge_answers(read.records, &mut out);
    let drafts = unique_phrasings(drafts, &mut out);
    let ids = assign_ids(&drafts, &mut out.stats);
    let mut sources = SourceTable::new(template, read.sources);
    // A related id the input gave names the entry that first had it.
    let mut renamed: HashMap<&str, &str> = HashMap::new();
    for (id, given) in &ids {
        if let Some(given) = given {
            renamed.entry(given.as_str()).or_insert(id.as_str());
        }
    }
    let final_ids: HashSet<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    let mut entries = Vec::with_capacity(drafts.len());
    for (draft, (id, _)) in drafts.iter().zip(&ids) {
        let mut cited = Vec::new();
        for item in &draft.sources {
            match sources.resolve(item) {
                Ok(source) if !cited.contains(&source) => cited.push(source),
                Ok(_) => {}
                Err(message) => out.problems.push((draft.origin, message)),
            }
        }
        if cited.is_empty() {
            out.problems.push((
                draft.origin,
                format!(
                    "entry `{id}` has no source; it was written with `sources = []`: add a URL, DOI or citation in the source column (or to faq/*.toml and sources.toml)"
                ),
            ));
        }
        let mut related: Vec<String> = Vec::new();
        for item in &draft.related {
            let target = renamed.get(item.as_str()).copied().or_else(|| final_ids.get(item.as_str()).copied());
            match target {
                Some(target) if target == id.as_str() || related.iter().any(|known| known == target) => {}
                Some(target) => related.push(target.to_owned()),
                None => out.problems.push((
                    draft.origin,
                    format!("entry `{id}` relates to `{item}`, which is not among the imported entries; left out"),
                )),
            }
        }
        entries.push((
            draft.origin,
            Entry {
                id: id.clone(),
                topic: draft.topic,
                question: draft.question.clone(),
                alternates: draft.alternates.clone(),
                answer: draft.answer.clone(),
                sources: cited,
                related,
                crisis_resources: draft.crisis_resources,
            },
        ));
    }
    let used = sources.used;
    out.entries = split_long_answers(entries, &used, &template.messages, &mut out);
    out.sources = used;
    out.stats.entries = out.entries.len();
    out.stats.topics = out.topics.len();
    out.stats.sources = out.sources.len();
    out
}

/// Rows with the same answer become one entry (the first row's), unless they
/// carry different ids; topics are collected on the way.
fn merge_answers(records: Vec<read::Record>, out: &mut Converted) -> Vec<Draft> {
    let mut drafts: Vec<Draft> = Vec::new();
    let mut by_answer: HashMap<String, usize> = HashMap::new();
    let mut topic_ids: HashMap<String, usize> = HashMap::new();
    for record in records {
        let mut question = record.question;
        let mut alternates = record.alternates;
        if question.is_empty() && !alternates.is_empty() {
            question = alternates.remove(0);
        }
        let mut usable = true;
        if question.is_empty() {
            out.problems
                .push((record.origin, "empty question: this row was not imported; give it a question".to_owned()));
            usable = false;
        }
        if record.answer.is_empty() {
            out.problems.push((record.origin, "empty answer: this row was not imported; give it an answer".to_owned()));
            usable = false;
        }
        if !usable {
            continue;
        }
        let (topic_id, title) = match (record.topic_id, record.topic) {
            (Some(id), Some(title)) => (id, title),
            (Some(id), None) => (id.clone(), id),
            (None, Some(title)) => (title.clone(), title),
            (None, None) => (DEFAULT_TOPIC_ID.to_owned(), DEFAULT_TOPIC_TITLE.to_owned()),
        };
        let topic_id = if valid_id(&topic_id) { topic_id } else { id_from(&topic_id, "topic") };
        let topic = *topic_ids.entry(topic_id.clone()).or_insert_with(|| {
            out.topics.push(Topic { id: topic_id, title });
            out.topics.len() - 1
        });
        let key = record.answer.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(&index) = by_answer.get(&key)
            && let Some(draft) = drafts.get_mut(index)
            && (record.id.is_none() || draft.id.is_none() || record.id == draft.id)
        {
            draft.alternates.push(question);
            draft.alternates.extend(alternates);
            draft.sources.extend(record.sources);
            draft.related.extend(record.related);
            draft.crisis_resources |= record.crisis_resources;
            if draft.id.is_none() {
                draft.id = record.id;
            }
            out.stats.merged_rows += 1;
            continue;
        }
        by_answer.entry(key).or_insert(drafts.len());
        drafts.push(Draft {
            origin: record.origin,
            id: record.id,
            topic,
            question,
            alternates,
            answer: record.answer,
            sources: record.sources,
            related: record.related,
            crisis_resources: record.crisis_resources,
        });
    }
    drafts
}

/// Keeps each phrasing once in the whole knowledge base, on the first entry
/// that has it (compared as `faqbot check` compares them). An entry left with
/// no phrasing at all asks only what another entry answers differently: that
/// is reported, not guessed at.
fn unique_phrasings(drafts: Vec<Draft>, out: &mut Converted) -> Vec<Draft> {
    let mut seen: HashMap<String, (usize, Origin)> = HashMap::new();
    let mut kept: Vec<Draft> = Vec::with_capacity(drafts.len());
    for mut draft in drafts {
        let this = kept.len();
        let mut phrasings = Vec::new();
        let mut first_owner = None;
        let mut no_letters = false;
        for phrasing in std::iter::once(draft.question.clone()).chain(draft.alternates.drain(..)) {
            let key = normalize(&phrasing);
            if key.is_empty() {
                no_letters = true;
                continue;
            }
            match seen.get(&key) {
                Some((owner, origin)) => {
                    out.stats.repeated_phrasings += 1;
                    if *owner != this {
                        first_owner.get_or_insert(*origin);
                    }
                }
                None => {
                    seen.insert(key, (this, draft.origin));
                    phrasings.push(phrasing);
                }
            }
        }
        let mut phrasings = phrasings.into_iter();
        let Some(question) = phrasings.next() else {
            let message = match first_owner {
                Some(origin) => format!(
                    "question {:?} is already asked at line {} with a different answer; this answer was not imported: merge the two answers or reword the question",
                    draft.question, origin.line
                ),
                None if no_letters => {
                    format!("question {:?} has no letters or digits; this row was not imported", draft.question)
                }
                None => format!("question {:?} could not be imported", draft.question),
            };
            out.problems.push((draft.origin, message));
            continue;
        };
        draft.question = question;
        draft.alternates = phrasings.collect();
        kept.push(draft);
    }
    kept
}

/// Final ids, each with the id the input gave (if any): valid given ids are
/// kept when unique; the others are made from the question.
fn assign_ids(drafts: &[Draft], stats: &mut Stats) -> Vec<(String, Option<String>)> {
    let mut used: HashSet<String> = HashSet::new();
    let mut ids: Vec<Option<String>> = drafts
        .iter()
        .map(|draft| {
            let id = draft.id.as_ref().filter(|id| valid_id(id) && !used.contains(*id))?;
            used.insert(id.clone());
            Some(id.clone())
        })
        .collect();
    for (slot, draft) in ids.iter_mut().zip(drafts) {
        if slot.is_none() {
            let base = match &draft.id {
                Some(given) => id_from(given, "entry"),
                None => id_from(&draft.question, "entry"),
            };
            *slot = Some(unique(&base, &mut used));
            stats.new_ids += 1;
        }
    }
    ids.into_iter().zip(drafts).map(|(id, draft)| (id.unwrap_or_default(), draft.id.clone())).collect()
}

/// The sources the entries cite: known ones (the template's, or given in full
/// by a JSON export) by id, and new ones made from URLs, DOIs and citations.
struct SourceTable {
    known: HashMap<String, Source>,
    /// Source ids taken, by the template and by what has been made.
    taken: HashSet<String>,
    /// The item text or id → the id it became.
    resolved: HashMap<String, String>,
    used: Vec<Source>,
}

impl SourceTable {
    fn new(template: &KnowledgeBase, given: Vec<(Source, Origin)>) -> Self {
        let mut known: HashMap<String, Source> =
            template.sources.iter().map(|source| (source.id.clone(), source.clone())).collect();
        // A JSON export's own sources win over the template's.
        known.extend(given.into_iter().map(|(source, _)| (source.id.clone(), source)));
        let taken = known.keys().cloned().collect();
        Self { known, taken, resolved: HashMap::new(), used: Vec::new() }
    }

    /// The id of the source `item` names, adding it to `used` the first time.
    fn resolve(&mut self, item: &str) -> Result<String, String> {
        if let Some(id) = self.resolved.get(item) {
            return Ok(id.clone());
        }
        let source = match self.known.get(item) {
            Some(source) => source.clone(),
            None => self.make(item)?,
        };
        self.resolved.insert(item.to_owned(), source.id.clone());
        let id = source.id.clone();
        if !self.used.iter().any(|used| used.id == id) {
            self.used.push(source);
        }
        Ok(id)
    }

    fn make(&mut self, item: &str) -> Result<Source, String> {
        let doi = item
            .strip_prefix("https://doi.org/")
            .or_else(|| item.strip_prefix("http://doi.org/"))
            .or_else(|| item.strip_prefix("https://dx.doi.org/"))
            .or_else(|| item.strip_prefix("doi:"))
            .map(str::trim)
            .or(Some(item))
            .filter(|doi| doi.starts_with("10.") && doi.contains('/') && !doi.contains(char::is_whitespace));
        if let Some(doi) = doi {
            let id = unique(&id_from(&format!("doi {doi}"), "source"), &mut self.taken);
            return Ok(Source {
                id,
                label: format!("DOI {doi}"),
                citation: format!("DOI {doi}"),
                doi: Some(doi.to_owned()),
                url: None,
            });
        }
        let (secure, rest) = match (item.strip_prefix("https://"), item.strip_prefix("http://")) {
            (Some(rest), _) => (true, Some(rest)),
            (None, Some(rest)) => (false, Some(rest)),
            (None, None) => (false, None),
        };
        if let Some(rest) = rest.filter(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace)) {
            let label = rest.strip_prefix("www.").unwrap_or(rest).trim_end_matches('/');
            let id = unique(&id_from(label, "source"), &mut self.taken);
            // `check` accepts only https links; a plain http address stays a citation.
            let url = secure.then(|| item.to_owned());
            return Ok(Source { id, label: shorten(label, 80), citation: item.to_owned(), doi: None, url });
        }
        let looks_like_id = valid_id(item) && item.contains('-');
        if looks_like_id {
            return Err(format!(
                "source `{item}` is not a source id of the template's sources.toml, and not a URL, DOI or citation; left out"
            ));
        }
        let id = unique(&id_from(item, "source"), &mut self.taken);
        Ok(Source { id, label: shorten(item, 80), citation: item.to_owned(), doi: None, url: None })
    }
}

/// Splits each answer that, with its question, sources, the most the safety
/// net adds and the clinician note (`reply::longest_answer_len`), is over
/// Telegram's limit: at paragraph breaks, into
/// entries whose questions end "(part 2)", "(part 3)", each related to the
/// next. An answer with a paragraph too long for one message is reported.
fn split_long_answers(
    entries: Vec<(Origin, Entry)>,
    sources: &[Source],
    messages: &Messages,
    out: &mut Converted,
) -> Vec<Entry> {
    let mut taken: HashSet<String> = entries.iter().map(|(_, entry)| entry.id.clone()).collect();
    let mut result = Vec::with_capacity(entries.len());
    for (origin, entry) in entries {
        let cited: Vec<String> = entry
            .sources
            .iter()
            .filter_map(|id| sources.iter().find(|source| &source.id == id))
            .map(|source| source.label.clone())
            .collect();
        let length = |question: &str, answer: &str| {
            let part = Entry { question: question.to_owned(), answer: answer.to_owned(), ..entry.clone() };
            crate::reply::longest_answer_len(&part, cited.clone(), messages)
        };
        let full = length(&entry.question, &entry.answer);
        if full <= TELEGRAM_LIMIT {
            result.push(entry);
            continue;
        }
        let part_question = |number: usize| format!("{} (part {number})", entry.question);
        let mut parts: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut too_long = None;
        let paragraphs = entry.answer.split("\n\n").map(str::trim).filter(|paragraph| !paragraph.is_empty());
        for (number, paragraph) in paragraphs.enumerate() {
            let question = part_question(parts.len() + 1);
            let joined = if current.is_empty() { paragraph.to_owned() } else { format!("{current}\n\n{paragraph}") };
            if length(&question, &joined) <= TELEGRAM_LIMIT {
                current = joined;
                continue;
            }
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            if length(&part_question(parts.len() + 1), paragraph) > TELEGRAM_LIMIT {
                too_long = Some(number + 1);
                break;
            }
            current = paragraph.to_owned();
        }
        if !current.is_empty() {
            parts.push(current);
        }
        if let Some(paragraph) = too_long {
            out.problems.push((
                origin,
                format!(
                    "the answer of `{}` is {full} characters with its sources and the clinician note, over Telegram's {TELEGRAM_LIMIT}, and its paragraph {paragraph} alone is too long to split at; it was written whole: shorten it or add paragraph breaks (a blank line)",
                    entry.id
                ),
            ));
            result.push(entry);
            continue;
        }
        out.stats.split_answers += 1;
        out.stats.split_parts += parts.len();
        let ids: Vec<String> = (1..=parts.len())
            .map(|number| match number {
                1 => entry.id.clone(),
                _ => {
                    let suffix = format!("-part-{number}");
                    let base = trim_id(&entry.id, MAX_ID - suffix.len());
                    unique(&format!("{base}{suffix}"), &mut taken)
                }
            })
            .collect();
        for (index, answer) in parts.into_iter().enumerate() {
            let mut related = Vec::new();
            if let Some(next) = ids.get(index + 1) {
                related.push(next.clone());
            }
            if index > 0 {
                related.extend(ids.get(index - 1).cloned());
            } else {
                related.extend(entry.related.iter().cloned());
            }
            result.push(Entry {
                id: ids.get(index).cloned().unwrap_or_default(),
                topic: entry.topic,
                question: if index == 0 { entry.question.clone() } else { part_question(index + 1) },
                alternates: if index == 0 { entry.alternates.clone() } else { Vec::new() },
                answer,
                sources: entry.sources.clone(),
                related,
                crisis_resources: entry.crisis_resources,
            });
        }
    }
    result
}

/// The rule `faqbot check` applies to ids.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// Words left out of ids made from questions: they tell entries apart least.
const ID_STOP_WORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "do", "does", "did", "can", "could", "should", "would", "will",
    "i", "me", "my", "you", "your", "it", "its", "of", "to", "for", "in", "on", "and", "or", "this", "that", "there",
    "am", "have", "has",
];

/// A kebab-case id of at most 40 characters made from `text`'s words
/// (ASCII letters and digits; common small words left out), or `fallback`.
pub(crate) fn id_from(text: &str, fallback: &str) -> String {
    let words: Vec<String> = normalize(text)
        .split(' ')
        .map(|word| word.chars().filter(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()).collect::<String>())
        .filter(|word| !word.is_empty())
        .collect();
    let content: Vec<&String> = words.iter().filter(|word| !ID_STOP_WORDS.contains(&word.as_str())).collect();
    let chosen: Vec<&String> = if content.is_empty() { words.iter().collect() } else { content };
    let mut id = String::new();
    for word in chosen {
        let extra = usize::from(!id.is_empty()) + word.len();
        if id.len() + extra > MAX_ID {
            if id.is_empty() {
                id = trim_id(word, MAX_ID);
            }
            break;
        }
        if !id.is_empty() {
            id.push('-');
        }
        id.push_str(word);
    }
    if id.is_empty() { fallback.to_owned() } else { id }
}

/// `id` cut to at most `max` characters (all ASCII), without a trailing hyphen.
fn trim_id(id: &str, max: usize) -> String {
    let cut: String = id.chars().take(max).collect();
    cut.trim_end_matches('-').to_owned()
}

/// `base`, or `base-2`, `base-3`, ... : the first not yet taken (then taken).
fn unique(base: &str, taken: &mut HashSet<String>) -> String {
    let mut candidate = base.to_owned();
    let mut number = 2;
    while taken.contains(&candidate) {
        let suffix = format!("-{number}");
        candidate = format!("{}{suffix}", trim_id(base, MAX_ID - suffix.len()));
        number += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_kebab_case_short_and_unique() {
        assert_eq!(
            id_from("What are the side effects of ketamine treatment?", "entry"),
            "what-side-effects-ketamine-treatment"
        );
        assert_eq!(id_from("Is it safe?", "entry"), "safe");
        assert_eq!(id_from("???", "entry"), "entry");
        let long = id_from("supercalifragilisticexpialidocious-and-then-some-more-words", "entry");
        assert!(long.len() <= MAX_ID && valid_id(&long), "{long}");
        let mut taken = HashSet::new();
        let base = "a".repeat(40);
        assert_eq!(unique(&base, &mut taken), base);
        let second = unique(&base, &mut taken);
        assert!(second.len() <= MAX_ID && second.ends_with("-2"), "{second}");
    }
}
