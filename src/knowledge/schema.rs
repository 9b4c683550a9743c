//! Reads TOML tables with positions, so that every missing, unknown or
//! ill-typed key becomes a `Problem` at its exact `line:col` instead of
//! stopping at the first serde error.

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Problem;

/// One knowledge file's text, with what is needed to turn byte offsets into
/// line and column.
pub(super) struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
        Self { path, text, line_starts }
    }

    /// 1-based line and character column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let col = self.text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        (line, col)
    }

    pub fn problem(&self, span: &Range<usize>, message: impl Into<String>) -> Problem {
        let (line, col) = self.position(span.start);
        Problem { path: self.path.clone(), line, col, message: message.into() }
    }
}

/// A string value with where it stands in its file.
#[derive(Debug, Clone)]
pub(super) struct Located {
    pub value: String,
    pub span: Range<usize>,
}

/// Reads the keys of one table, reporting problems into `problems`.
///
/// Create it with the keys the table may have; `finish` reports any other key.
pub(super) struct Fields<'a, 'p, 'i> {
    file: &'a SourceFile,
    table: &'a DeTable<'i>,
    span: Range<usize>,
    what: &'static str,
    known: &'static [&'static str],
    pub problems: &'p mut Vec<Problem>,
}

impl<'a, 'p, 'i> Fields<'a, 'p, 'i> {
    pub fn new(
        file: &'a SourceFile,
        table: &'a DeTable<'i>,
        span: Range<usize>,
        what: &'static str,
        known: &'static [&'static str],
        problems: &'p mut Vec<Problem>,
    ) -> Self {
        Self { file, table, span, what, known, problems }
    }

    fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.table.get(key)
    }

    fn report(&mut self, span: &Range<usize>, message: String) {
        self.problems.push(self.file.problem(span, message));
    }

    fn missing(&mut self, key: &str) {
        let message = format!("{} is missing required key `{key}`", self.what);
        let span = self.span.clone();
        self.report(&span, message);
    }

    fn wrong_type(&mut self, key: &str, expected: &str, value: &Spanned<DeValue<'_>>) {
        let message = format!("`{key}` in {} must be {expected}, found {}", self.what, value.get_ref().type_str());
        self.report(&value.span(), message);
    }

    /// A required string that is not blank.
    pub fn text(&mut self, key: &str) -> Option<Located> {
        match self.get(key) {
            None => {
                self.missing(key);
                None
            }
            Some(value) => self.string_value(key, value),
        }
    }

    /// An optional string; when present it must not be blank.
    pub fn optional_text(&mut self, key: &str) -> Option<Located> {
        let value = self.get(key)?;
        self.string_value(key, value)
    }

    fn string_value(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<Located> {
        match value.get_ref() {
            DeValue::String(text) if text.trim().is_empty() => {
                let message = format!("`{key}` in {} is empty", self.what);
                self.report(&value.span(), message);
                None
            }
            DeValue::String(text) => Some(Located { value: text.trim().to_owned(), span: value.span() }),
            _ => {
                self.wrong_type(key, "a string", value);
                None
            }
        }
    }

    /// An array of non-blank strings; `None` when required and missing or of
    /// the wrong type. Blank items are reported and left out.
    pub fn text_list(&mut self, key: &str, required: bool) -> Option<Vec<Located>> {
        let Some(value) = self.get(key) else {
            if required {
                self.missing(key);
                return None;
            }
            return Some(Vec::new());
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, "an array of strings", value);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(text) if text.trim().is_empty() => {
                    let message = format!("an item of `{key}` in {} is empty", self.what);
                    self.report(&item.span(), message);
                }
                DeValue::String(text) => {
                    out.push(Located { value: text.trim().to_owned(), span: item.span() });
                }
                other => {
                    let message =
                        format!("items of `{key}` in {} must be strings, found {}", self.what, other.type_str());
                    self.report(&item.span(), message);
                }
            }
        }
        Some(out)
    }

    /// An optional boolean, `false` when absent.
    pub fn flag(&mut self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(value) => match value.get_ref() {
                DeValue::Boolean(flag) => *flag,
                _ => {
                    self.wrong_type(key, "true or false", value);
                    false
                }
            },
        }
    }

    /// A required sub-table, e.g. `[topic]`.
    pub fn table(&mut self, key: &str) -> Option<(&'a DeTable<'i>, Range<usize>)> {
        let Some(value) = self.get(key) else {
            self.missing(key);
            return None;
        };
        match value.get_ref() {
            DeValue::Table(table) => Some((table, value.span())),
            _ => {
                self.wrong_type(key, "a table", value);
                None
            }
        }
    }

    /// A required, non-empty array of tables, e.g. `[[entry]]`.
    pub fn table_list(&mut self, key: &str) -> Vec<(&'a DeTable<'i>, Range<usize>)> {
        let Some(value) = self.get(key) else {
            self.missing(key);
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, &format!("an array of tables (`[[{key}]]`)"), value);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(table) => out.push((table, item.span())),
                other => {
                    let message = format!("items of `{key}` must be tables, found {}", other.type_str());
                    self.report(&item.span(), message);
                }
            }
        }
        if items.is_empty() {
            let message = format!("`{key}` in {} is empty", self.what);
            self.report(&value.span(), message);
        }
        out
    }

    /// Reports every key not in the known list.
    pub fn finish(mut self) {
        let unknown: Vec<_> = self
            .table
            .iter()
            .filter(|(key, _)| !self.known.contains(&key.get_ref().as_ref()))
            .map(|(key, _)| (key.get_ref().to_string(), key.span()))
            .collect();
        for (key, span) in unknown {
            let hint = match closest(&key, self.known) {
                Some(near) => format!("; did you mean `{near}`?"),
                None => format!("; expected one of: {}", self.known.join(", ")),
            };
            let message = format!("unknown key `{key}` in {}{hint}", self.what);
            self.report(&span, message);
        }
    }
}

/// The known key within two edits of `key`, if there is one.
pub(super) fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let file = SourceFile::new("x.toml".into(), "ab\né = 1\n\nz".into());
        assert_eq!(file.position(0), (1, 1));
        assert_eq!(file.position(1), (1, 2));
        assert_eq!(file.position(3), (2, 1));
        // "é" is two bytes but one column.
        assert_eq!(file.position(6), (2, 3));
        assert_eq!(file.position(11), (4, 1));
    }

    #[test]
    fn suggests_near_keys_only() {
        assert_eq!(closest("alternate", &["alternates", "answer"]), Some("alternates"));
        assert_eq!(closest("qestion", &["question"]), Some("question"));
        assert_eq!(closest("colour", &["question", "answer"]), None);
    }
}
