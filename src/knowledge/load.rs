//! Loading a knowledge directory: read every file, check each on its own,
//! then check what ties them together, and build a `KnowledgeBase` only when
//! nothing at all is wrong.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::de::DeTable;

use super::schema::{Fields, Located, SourceFile};
use super::{Entry, KnowledgeBase, LoadStats, Messages, Problem, Problems, Source, Topic};
use crate::text::normalize;

const SOURCES_FILE: &str = "sources.toml";
const MESSAGES_FILE: &str = "messages.toml";
const SYNONYMS_FILE: &str = "synonyms.toml";
const FAQ_DIR: &str = "faq";
/// Optional: without it the shipped safety examples are used.
const SAFETY_FILE: &str = crate::safety::exemplars::FILE;

/// Telegram's limit on one message, in UTF-16 code units.
pub const TELEGRAM_LIMIT: usize = 4096;

/// Why a knowledge directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the knowledge directory {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Invalid(#[from] Problems),
}

/// Loads and validates the knowledge directory `dir`.
///
/// Fails with `LoadError::Invalid` listing every problem found in every file,
/// or `LoadError::Io` when the directory itself cannot be read.
pub fn load(dir: &Path) -> Result<KnowledgeBase, LoadError> {
    let files = read_files(dir)?;
    let mut loader = Loader::default();
    let mut hasher = Sha256::new();
    for file in &files {
        hasher.update(file.path.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(file.text.as_bytes());
        hasher.update([0]);
    }
    for path in [SOURCES_FILE, MESSAGES_FILE, SYNONYMS_FILE] {
        if !files.iter().any(|file| file.path == dir.join(path)) {
            loader.problems.push(Problem {
                path: dir.join(path),
                line: 1,
                col: 1,
                message: format!("required file `{path}` is missing"),
            });
        }
    }
    let faq_count = files.iter().filter(|file| is_faq(dir, &file.path)).count();
    if faq_count == 0 {
        loader.problems.push(Problem {
            path: dir.join(FAQ_DIR),
            line: 1,
            col: 1,
            message: format!("no FAQ files: put entries in `{FAQ_DIR}/*.toml`"),
        });
    }
    for file in &files {
        loader.read_file(dir, file);
    }
    let digest = hasher.finalize();
    let content_hash: String = digest.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
    loader.finish(files.len(), content_hash)
}

fn is_faq(dir: &Path, path: &Path) -> bool {
    path.parent() == Some(&dir.join(FAQ_DIR))
}

/// The top-level files we know and every `faq/*.toml`, in a stable order.
/// Other top-level `.toml` files are read too, to be reported as unexpected.
fn read_files(dir: &Path) -> Result<Vec<SourceFile>, LoadError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Io { path, source }
    };
    let mut paths = toml_files(dir).map_err(io_error(dir))?;
    let faq_dir = dir.join(FAQ_DIR);
    if faq_dir.is_dir() {
        paths.extend(toml_files(&faq_dir).map_err(io_error(&faq_dir))?);
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).map_err(io_error(&path))?;
            Ok(SourceFile::new(path, text))
        })
        .collect()
}

fn toml_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir)? {
        let path = item?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "toml") {
            out.push(path);
        }
    }
    Ok(out)
}

/// Where a value was defined, to point at earlier definitions in messages.
#[derive(Clone)]
struct Place {
    path: PathBuf,
    position: (usize, usize),
}

impl Place {
    fn new(file: &SourceFile, span: &Range<usize>) -> Self {
        Self { path: file.path.clone(), position: file.position(span.start) }
    }

    fn problem(&self, message: impl Into<String>) -> Problem {
        Problem { path: self.path.clone(), line: self.position.0, col: self.position.1, message: message.into() }
    }

    fn describe(&self) -> String {
        format!("{}:{}:{}", self.path.display(), self.position.0, self.position.1)
    }
}

struct LocatedEntry {
    entry: Entry,
    place: Place,
    phrasings: Vec<(String, Place)>,
    sources: Vec<(String, Place)>,
    related: Vec<(String, Place)>,
}

#[derive(Default)]
struct Loader {
    problems: Vec<Problem>,
    topics: Vec<(Topic, Place)>,
    entries: Vec<LocatedEntry>,
    sources: Vec<(Source, Place)>,
    messages: Option<Messages>,
    /// The messages that are present, for checks that run even when some are missing.
    message_texts: HashMap<String, String>,
    synonyms: Vec<Vec<String>>,
    exemplars: Option<crate::safety::exemplars::Exemplars>,
    /// Ids seen even on records with other problems, so that one broken
    /// record does not also make every reference to it an error.
    declared_entries: HashSet<String>,
    declared_sources: HashSet<String>,
}

impl Loader {
    fn read_file(&mut self, dir: &Path, file: &SourceFile) {
        let (table, errors) = DeTable::parse_recoverable(&file.text);
        if !errors.is_empty() {
            for error in errors {
                let span = error.span().unwrap_or(0..0);
                let message = format!("TOML syntax: {}", error.message().trim());
                self.problems.push(file.problem(&span, message));
            }
            // Still learn the ids this file declares, so the files that refer
            // to them are not blamed for this file's syntax error.
            for id in declared_ids(&file.text) {
                self.declared_entries.insert(id.clone());
                self.declared_sources.insert(id);
            }
            return;
        }
        let (root, root_span) = (table.get_ref(), table.span());
        let name = file.path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        if is_faq(dir, &file.path) {
            self.read_faq(file, root, root_span);
        } else if name == SOURCES_FILE {
            self.read_sources(file, root, root_span);
        } else if name == MESSAGES_FILE {
            self.read_messages(file, root);
        } else if name == SYNONYMS_FILE {
            self.read_synonyms(file, root, root_span);
        } else if name == SAFETY_FILE {
            match crate::safety::exemplars::parse(&file.text) {
                Ok(exemplars) => self.exemplars = Some(exemplars),
                Err(problems) => {
                    for (span, message) in problems {
                        self.problems.push(file.problem(&span, message));
                    }
                }
            }
        } else {
            self.problems.push(file.problem(
                &(0..0),
                format!("unexpected file; FAQ entries belong in `{FAQ_DIR}/`, and the other files are {SOURCES_FILE}, {MESSAGES_FILE}, {SYNONYMS_FILE} and {SAFETY_FILE}"),
            ));
        }
    }

    fn read_faq(&mut self, file: &SourceFile, root: &DeTable<'_>, root_span: Range<usize>) {
        let mut fields = Fields::new(file, root, root_span, "an FAQ file", &["topic", "entry"], &mut self.problems);
        let topic_table = fields.table("topic");
        let entry_tables = fields.table_list("entry");
        fields.finish();

        let topic_index = self.topics.len();
        if let Some((table, span)) = topic_table {
            let mut fields = Fields::new(file, table, span.clone(), "[topic]", &["id", "title"], &mut self.problems);
            let id = fields.text("id");
            let title = fields.text("title");
            fields.finish();
            if let (Some(id), Some(title)) = (id, title) {
                self.check_id(file, &id, "topic");
                self.topics.push((Topic { id: id.value, title: title.value }, Place::new(file, &id.span)));
            }
        }
        // Entries of a file whose topic is broken are still checked, and
        // point at a placeholder topic that is never built into a KnowledgeBase.
        if self.topics.len() == topic_index {
            self.topics.push((Topic { id: String::new(), title: String::new() }, Place::new(file, &(0..0))));
        }

        const ENTRY_KEYS: &[&str] =
            &["id", "question", "alternates", "answer", "sources", "related", "crisis_resources"];
        for (table, span) in entry_tables {
            let mut fields = Fields::new(file, table, span.clone(), "[[entry]]", ENTRY_KEYS, &mut self.problems);
            let id = fields.text("id");
            let question = fields.text("question");
            let alternates = fields.text_list("alternates", true);
            let answer = fields.text("answer");
            let sources = fields.text_list("sources", true);
            let related = fields.text_list("related", false);
            let crisis_resources = fields.flag("crisis_resources");
            fields.finish();
            if let Some(id) = &id {
                self.declared_entries.insert(id.value.clone());
            }

            if let Some(sources) = &sources
                && sources.is_empty()
            {
                self.problems.push(file.problem(&span, "an entry must cite at least one source in `sources`"));
            }
            let (Some(id), Some(question), Some(alternates), Some(answer), Some(sources), Some(related)) =
                (id, question, alternates, answer, sources, related)
            else {
                continue;
            };
            self.check_id(file, &id, "entry");
            let place = Place::new(file, &id.span);
            let located = |items: &[Located]| -> Vec<(String, Place)> {
                items.iter().map(|item| (item.value.clone(), Place::new(file, &item.span))).collect()
            };
            let phrasings = std::iter::once(&question).chain(alternates.iter());
            let phrasings = phrasings.map(|item| (item.value.clone(), Place::new(file, &item.span))).collect();
            self.entries.push(LocatedEntry {
                entry: Entry {
                    id: id.value,
                    topic: topic_index,
                    question: question.value,
                    alternates: alternates.into_iter().map(|item| item.value).collect(),
                    answer: answer.value,
                    sources: sources.iter().map(|item| item.value.clone()).collect(),
                    related: related.iter().map(|item| item.value.clone()).collect(),
                    crisis_resources,
                },
                place,
                phrasings,
                sources: located(&sources),
                related: located(&related),
            });
        }
    }

    fn read_sources(&mut self, file: &SourceFile, root: &DeTable<'_>, root_span: Range<usize>) {
        let mut fields = Fields::new(file, root, root_span, SOURCES_FILE, &["source"], &mut self.problems);
        let tables = fields.table_list("source");
        fields.finish();
        const SOURCE_KEYS: &[&str] = &["id", "label", "citation", "doi", "url"];
        for (table, span) in tables {
            let mut fields = Fields::new(file, table, span, "[[source]]", SOURCE_KEYS, &mut self.problems);
            let id = fields.text("id");
            let label = fields.text("label");
            let citation = fields.text("citation");
            let doi = fields.optional_text("doi");
            let url = fields.optional_text("url");
            fields.finish();
            if let Some(id) = &id {
                self.declared_sources.insert(id.value.clone());
            }
            if let Some(doi) = &doi
                && !doi.value.starts_with("10.")
            {
                self.problems.push(
                    file.problem(&doi.span, "`doi` must be a bare DOI such as 10.1000/xyz, without https://doi.org/"),
                );
            }
            if let Some(url) = &url
                && !url.value.starts_with("https://")
            {
                self.problems.push(file.problem(&url.span, "`url` must start with https://"));
            }
            let (Some(id), Some(label), Some(citation)) = (id, label, citation) else {
                continue;
            };
            self.check_id(file, &id, "source");
            let place = Place::new(file, &id.span);
            let source = Source {
                id: id.value,
                label: label.value,
                citation: citation.value,
                doi: doi.map(|doi| doi.value),
                url: url.map(|url| url.value),
            };
            self.sources.push((source, place));
        }
    }

    fn read_messages(&mut self, file: &SourceFile, root: &DeTable<'_>) {
        let mut pairs = HashMap::new();
        for (key, value) in root.iter() {
            let key_name = key.get_ref().as_ref();
            if !Messages::KEYS.contains(&key_name) {
                let hint = match super::schema::closest(key_name, Messages::KEYS) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None => String::from("; see knowledge/README.md for the list"),
                };
                self.problems.push(file.problem(&key.span(), format!("unknown message `{key_name}`{hint}")));
                continue;
            }
            match value.get_ref().as_str() {
                Some(text) if text.trim().is_empty() => {
                    self.problems.push(file.problem(&value.span(), format!("message `{key_name}` is empty")));
                }
                Some(text) => {
                    pairs.insert(key_name.to_owned(), text.trim().to_owned());
                }
                None => {
                    let found = value.get_ref().type_str();
                    self.problems.push(
                        file.problem(&value.span(), format!("message `{key_name}` must be a string, found {found}")),
                    );
                }
            }
        }
        for key in Messages::KEYS {
            if !root.contains_key(*key) {
                self.problems.push(file.problem(&(0..0), format!("required message `{key}` is missing")));
            }
        }
        self.message_texts = pairs.clone();
        self.messages = Messages::from_pairs(pairs);
    }

    fn read_synonyms(&mut self, file: &SourceFile, root: &DeTable<'_>, root_span: Range<usize>) {
        let mut fields = Fields::new(file, root, root_span, SYNONYMS_FILE, &["groups"], &mut self.problems);
        let groups = match root.get("groups") {
            Some(value) => match value.get_ref().as_array() {
                Some(groups) => Some(groups),
                None => {
                    fields.problems.push(file.problem(&value.span(), "`groups` must be an array of arrays of strings"));
                    None
                }
            },
            None => {
                fields.text_list("groups", true);
                None
            }
        };
        fields.finish();
        for group in groups.into_iter().flat_map(|groups| groups.iter()) {
            let Some(words) = group.get_ref().as_array() else {
                self.problems.push(file.problem(&group.span(), "each synonym group must be an array of strings"));
                continue;
            };
            let mut normalised = Vec::with_capacity(words.len());
            for word in words.iter() {
                match word.get_ref().as_str().map(normalize) {
                    Some(text) if text.is_empty() => {
                        self.problems.push(file.problem(&word.span(), "a synonym is empty"));
                    }
                    Some(text) => normalised.push(text),
                    None => self.problems.push(file.problem(&word.span(), "synonyms must be strings")),
                }
            }
            if words.len() < 2 {
                self.problems.push(file.problem(&group.span(), "a synonym group needs at least two words"));
            }
            self.synonyms.push(normalised);
        }
    }

    fn check_id(&mut self, file: &SourceFile, id: &Located, what: &str) {
        let valid = id.value.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            && !id.value.starts_with('-')
            && !id.value.ends_with('-')
            && id.value.len() <= 40;
        if !valid {
            self.problems.push(file.problem(
                &id.span,
                format!("{what} id `{}` must be kebab-case (a-z, 0-9, -) and at most 40 characters", id.value),
            ));
        }
    }

    /// Cross-file checks, then the knowledge base if nothing is wrong.
    fn finish(mut self, files: usize, content_hash: String) -> Result<KnowledgeBase, LoadError> {
        self.check_duplicate_ids();
        self.check_references();
        self.check_phrasings();
        self.check_lengths();

        if !self.problems.is_empty() {
            self.problems.sort();
            self.problems.dedup();
            return Err(Problems { problems: self.problems }.into());
        }
        let Some(messages) = self.messages else {
            // Unreachable in practice: missing messages are reported above.
            return Err(Problems { problems: vec![] }.into());
        };
        let entries: Vec<Entry> = self.entries.into_iter().map(|located| located.entry).collect();
        let alternates = entries.iter().map(|entry| entry.alternates.len()).sum();
        Ok(KnowledgeBase {
            topics: self.topics.into_iter().map(|(topic, _)| topic).collect(),
            entries,
            sources: self.sources.into_iter().map(|(source, _)| source).collect(),
            messages,
            synonyms: self.synonyms,
            exemplars: self.exemplars,
            stats: LoadStats { files, alternates, content_hash },
        })
    }

    fn check_duplicate_ids(&mut self) {
        let topics = self.topics.iter().filter(|(topic, _)| !topic.id.is_empty());
        let topics = topics.map(|(topic, place)| (topic.id.as_str(), place));
        duplicates(topics, "topic", &mut self.problems);
        let entries = self.entries.iter().map(|entry| (entry.entry.id.as_str(), &entry.place));
        duplicates(entries, "entry", &mut self.problems);
        let sources = self.sources.iter().map(|(source, place)| (source.id.as_str(), place));
        duplicates(sources, "source", &mut self.problems);
    }

    fn check_references(&mut self) {
        let entry_ids = &self.declared_entries;
        let source_ids = &self.declared_sources;
        let mut cited = HashSet::new();
        for entry in &self.entries {
            for (source, place) in &entry.sources {
                cited.insert(source.as_str());
                if !source_ids.contains(source) {
                    self.problems.push(place.problem(format!(
                        "entry `{}` cites source `{source}`, which is not in {SOURCES_FILE}",
                        entry.entry.id
                    )));
                }
            }
            for (related, place) in &entry.related {
                if related == &entry.entry.id {
                    self.problems.push(place.problem(format!("entry `{related}` lists itself in `related`")));
                } else if !entry_ids.contains(related) {
                    self.problems.push(place.problem(format!(
                        "entry `{}` relates to `{related}`, which is not an entry id",
                        entry.entry.id
                    )));
                }
            }
        }
        for (source, place) in &self.sources {
            if !cited.contains(source.id.as_str()) {
                self.problems.push(place.problem(format!("source `{}` is not cited by any entry", source.id)));
            }
        }
    }

    fn check_phrasings(&mut self) {
        let mut seen: HashMap<String, (usize, &str, &Place)> = HashMap::new();
        for (index, entry) in self.entries.iter().enumerate() {
            for (phrasing, place) in &entry.phrasings {
                let key = normalize(phrasing);
                if key.is_empty() {
                    self.problems.push(place.problem("this phrasing has no letters or digits"));
                    continue;
                }
                match seen.get(&key) {
                    Some((owner, _, first)) if *owner == index => {
                        self.problems.push(place.problem(format!(
                            "phrasing {phrasing:?} repeats one at {} in the same entry",
                            first.describe()
                        )));
                    }
                    Some((_, owner, first)) => {
                        self.problems.push(place.problem(format!(
                            "phrasing {phrasing:?} of entry `{}` is the same as one of entry `{owner}` at {}",
                            entry.entry.id,
                            first.describe()
                        )));
                    }
                    None => {
                        seen.insert(key, (index, &entry.entry.id, place));
                    }
                }
            }
        }
    }

    /// Every answer, with its crisis lines, sources and the clinician note,
    /// must fit one Telegram message.
    fn check_lengths(&mut self) {
        let messages = &Messages::from_pairs_or_empty(&self.message_texts);
        let sources: HashMap<&str, &Source> =
            self.sources.iter().map(|(source, _)| (source.id.as_str(), source)).collect();
        for entry in &self.entries {
            let cited: Vec<String> = entry
                .entry
                .sources
                .iter()
                .filter_map(|id| sources.get(id.as_str()).map(|source| source.label.clone()))
                .collect();
            let length = crate::reply::longest_answer_len(&entry.entry, cited, messages);
            if length > TELEGRAM_LIMIT {
                self.problems.push(entry.place.problem(format!(
                    "entry `{}` is too long for one Telegram message: {length} of {TELEGRAM_LIMIT} characters with its sources, a check-in with the crisis lines, and the clinician note",
                    entry.entry.id
                )));
            }
        }
    }
}

/// The values of `id = "..."` lines: a best effort for unparseable files.
fn declared_ids(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter_map(|line| {
        let rest = line.trim().strip_prefix("id")?.trim_start().strip_prefix('=')?.trim();
        let id = rest.strip_prefix('"')?.split('"').next()?;
        Some(id.to_owned())
    })
}

/// Reports each id after its first definition.
fn duplicates<'a>(items: impl Iterator<Item = (&'a str, &'a Place)>, what: &str, problems: &mut Vec<Problem>) {
    let mut first: HashMap<&str, &Place> = HashMap::new();
    for (id, place) in items {
        match first.get(id) {
            Some(earlier) => problems
                .push(place.problem(format!("duplicate {what} id `{id}`; first defined at {}", earlier.describe()))),
            None => {
                first.insert(id, place);
            }
        }
    }
}
