//! Reading FAQ rows from CSV, TSV or JSON into `Record`s, each with the line
//! of the input it came from. Nothing here decides what becomes an entry:
//! that is `import`'s job. The `csv` crate does the quoting; the only
//! hand-written scanning is for diagnosis (an unclosed quote, where each JSON
//! item starts), over text that a real parser has already read.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Format, Origin};
use crate::knowledge::Source;

/// One row (CSV/TSV) or item (JSON), trimmed, with its cells as they were.
#[derive(Debug, Clone, Default)]
pub(super) struct Record {
    pub origin: Origin,
    pub id: Option<String>,
    pub topic: Option<String>,
    pub topic_id: Option<String>,
    pub question: String,
    pub alternates: Vec<String>,
    pub answer: String,
    pub sources: Vec<String>,
    pub related: Vec<String>,
    pub crisis_resources: bool,
}

/// What reading found: the records, sources given in full (JSON exports),
/// problems with where they are, and notes (ignored columns and keys).
#[derive(Debug, Default)]
pub(super) struct Read {
    pub records: Vec<Record>,
    pub sources: Vec<(Source, Origin)>,
    pub problems: Vec<(Origin, String)>,
    pub notes: Vec<String>,
}

/// What a column or key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Topic,
    TopicId,
    Question,
    /// A question followed by its alternates (JSON `questions` arrays).
    Questions,
    Alternates,
    Answer,
    Sources,
    Related,
    Crisis,
}

/// The field a header or key names, matched without case, spaces or punctuation,
/// with the synonyms hosted FAQ and QnA services use in their exports.
fn field_for(name: &str) -> Option<Field> {
    let key: String = name.chars().filter(|ch| ch.is_alphanumeric()).flat_map(char::to_lowercase).collect();
    let field = match key.as_str() {
        "id" | "entryid" | "entry" | "slug" => Field::Id,
        "topic" | "topictitle" | "category" | "section" | "group" => Field::Topic,
        "topicid" | "categoryid" | "sectionid" => Field::TopicId,
        "question" | "q" | "title" | "query" => Field::Question,
        "questions" => Field::Questions,
        "alternates"
        | "alternate"
        | "alternatequestions"
        | "alternativequestions"
        | "alternatives"
        | "alternativephrasings"
        | "alternatephrasings"
        | "otherquestions"
        | "variants"
        | "paraphrases"
        | "similarquestions" => Field::Alternates,
        "answer" | "answers" | "a" | "response" | "reply" => Field::Answer,
        "source" | "sources" | "reference" | "references" | "citation" | "citations" | "url" | "link" | "sourceurl" => {
            Field::Sources
        }
        "related" | "relatedids" | "relatedentries" => Field::Related,
        "crisisresources" | "crisis" => Field::Crisis,
        _ => return None,
    };
    Some(field)
}

/// Splits a list cell: one item per line when it has line breaks, else one
/// per `|`. Blank items are dropped.
pub(super) fn split_list(cell: &str) -> Vec<String> {
    let separator = if cell.contains('\n') { '\n' } else { '|' };
    cell.split(separator).map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// Line endings as `\n`, and the cell trimmed.
fn clean(cell: &str) -> String {
    cell.replace("\r\n", "\n").replace('\r', "\n").trim().to_owned()
}

fn parse_flag(cell: &str) -> Option<bool> {
    match cell.trim().to_lowercase().as_str() {
        "" | "false" | "no" | "0" | "n" => Some(false),
        "true" | "yes" | "1" | "y" => Some(true),
        _ => None,
    }
}

/// Reads `text` in `format`.
pub(super) fn read(text: &str, format: Format) -> Read {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Csv => read_delimited(text, b','),
        Format::Tsv => read_delimited(text, b'\t'),
        Format::Json => read_json(text),
    }
}

fn at_line(line: usize) -> Origin {
    Origin { line, item: None }
}

const UNCLOSED: &str = "a quoted cell opened here is never closed, so the rest of the file was read as one cell and not imported; close the quote (a quote inside a quoted cell is written \"\")";

fn read_delimited(text: &str, delimiter: u8) -> Read {
    let mut out = Read::default();
    let mut reader =
        csv::ReaderBuilder::new().delimiter(delimiter).has_headers(true).flexible(true).from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(error) => {
            out.problems.push((at_line(1), format!("cannot read the header row: {error}")));
            return out;
        }
    };
    let mut columns: Vec<(usize, Field)> = Vec::new();
    let mut ignored = Vec::new();
    for (index, name) in headers.iter().enumerate() {
        match field_for(name) {
            Some(field) => columns.push((index, field)),
            None if name.trim().is_empty() => {}
            None => ignored.push(name.trim().to_owned()),
        }
    }
    if !ignored.is_empty() {
        out.notes.push(format!("ignored column(s): {}", ignored.join(", ")));
    }
    let has = |field: Field| columns.iter().any(|(_, f)| *f == field);
    let named: Vec<&str> = headers.iter().map(str::trim).collect();
    let separator = if delimiter == b'\t' { "tab" } else { "comma" };
    if !has(Field::Question) && !has(Field::Questions) {
        out.problems.push((
            at_line(1),
            format!(
                "no question column: the header row has {:?} (separated by {separator}s); name one column `question`",
                named
            ),
        ));
    }
    if !has(Field::Answer) {
        out.problems.push((
            at_line(1),
            format!(
                "no answer column: the header row has {:?} (separated by {separator}s); name one column `answer`",
                named
            ),
        ));
    }
    let unclosed = unclosed_quote(text, delimiter);
    if !out.problems.is_empty() {
        if let Some(quote_line) = unclosed {
            out.problems.push((at_line(quote_line), UNCLOSED.to_owned()));
        }
        return out;
    }

    let mut rows: Vec<csv::StringRecord> = Vec::new();
    for result in reader.records() {
        match result {
            Ok(row) => rows.push(row),
            Err(error) => {
                let line = error.position().map_or(1, |position| position.line() as usize);
                out.problems.push((at_line(line), format!("cannot read this row: {error}")));
            }
        }
    }
    if let Some(quote_line) = unclosed {
        // Everything from the open quote to the end of the file was read as
        // one cell: the last row is not what its author meant.
        rows.pop();
        out.problems.push((at_line(quote_line), UNCLOSED.to_owned()));
    }
    for row in rows {
        let line = row.position().map_or(1, |position| position.line() as usize);
        if row.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        let mut record = Record { origin: at_line(line), ..Record::default() };
        for &(index, field) in &columns {
            let cell = clean(row.get(index).unwrap_or_default());
            if let Err(message) = set_text(&mut record, field, &cell) {
                out.problems.push((at_line(line), format!("column `{}`: {message}", named.get(index).unwrap_or(&""))));
            }
        }
        out.records.push(record);
    }
    out
}

/// Puts one cell's text into `record`; `Err` says why the cell is unusable.
fn set_text(record: &mut Record, field: Field, cell: &str) -> Result<(), String> {
    let set = |slot: &mut Option<String>| {
        if slot.is_none() && !cell.is_empty() {
            *slot = Some(cell.to_owned());
        }
    };
    match field {
        Field::Id => set(&mut record.id),
        Field::Topic => set(&mut record.topic),
        Field::TopicId => set(&mut record.topic_id),
        Field::Question if record.question.is_empty() => record.question = cell.to_owned(),
        Field::Question => record.alternates.push(cell.to_owned()),
        Field::Questions => {
            let mut items = split_list(cell).into_iter();
            if record.question.is_empty() {
                record.question = items.next().unwrap_or_default();
            }
            record.alternates.extend(items);
        }
        Field::Alternates => record.alternates.extend(split_list(cell)),
        Field::Answer if record.answer.is_empty() => record.answer = cell.to_owned(),
        Field::Answer if cell.is_empty() => {}
        Field::Answer => record.answer = format!("{}\n\n{cell}", record.answer),
        Field::Sources => record.sources.extend(split_list(cell)),
        Field::Related => record.related.extend(split_list(cell)),
        Field::Crisis => match parse_flag(cell) {
            Some(flag) => record.crisis_resources |= flag,
            None => return Err(format!("{cell:?} is not true or false")),
        },
    }
    Ok(())
}

/// The line of a quote that opens a cell and is never closed, if any.
/// The `csv` crate reads such a cell to the end of the file without an error.
fn unclosed_quote(text: &str, delimiter: u8) -> Option<usize> {
    let mut line = 1;
    let mut open_at = None;
    let mut at_cell_start = true;
    let mut bytes = text.bytes().peekable();
    while let Some(byte) = bytes.next() {
        if byte == b'\n' {
            line += 1;
        }
        match open_at {
            Some(_) if byte == b'"' => {
                if bytes.peek() == Some(&b'"') {
                    bytes.next();
                } else {
                    open_at = None;
                }
            }
            Some(_) => {}
            None if byte == b'"' && at_cell_start => open_at = Some(line),
            None => {}
        }
        at_cell_start = open_at.is_none() && (byte == delimiter || byte == b'\n' || byte == b'\r');
    }
    open_at
}

/// Keys of a JSON object that may hold the list of entries.
const LIST_KEYS: &[&str] = &["entries", "qnadocuments", "faqs", "faq", "items"];

fn read_json(text: &str) -> Read {
    let mut out = Read::default();
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            let message = format!("not valid JSON: {error}");
            out.problems.push((at_line(error.line().max(1)), message));
            return out;
        }
    };
    let (items, list_key) = match value {
        Value::Array(items) => (items, None),
        Value::Object(mut object) => {
            let key = object.keys().find(|key| LIST_KEYS.contains(&key.to_lowercase().as_str())).cloned();
            let Some(key) = key else {
                let keys: Vec<&String> = object.keys().collect();
                out.problems.push((
                    at_line(1),
                    format!("expected an array of entries, or an object with `entries`; found an object with {keys:?}"),
                ));
                return out;
            };
            if let Some(sources) = object.get("sources") {
                read_json_sources(text, sources, &mut out);
            }
            match object.remove(&key) {
                Some(Value::Array(items)) => (items, Some(key)),
                _ => {
                    out.problems.push((at_line(1), format!("`{key}` must be an array of entries")));
                    return out;
                }
            }
        }
        other => {
            out.problems.push((at_line(1), format!("expected an array of entries, found {}", json_type(&other))));
            return out;
        }
    };
    let lines = item_lines(text, list_key.as_deref());
    let mut ignored = BTreeSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let origin = Origin { line: lines.get(index).copied().unwrap_or(1), item: Some(index) };
        let Value::Object(object) = item else {
            out.problems.push((origin, format!("an entry must be an object, found {}", json_type(&item))));
            continue;
        };
        let mut record = Record { origin, ..Record::default() };
        for (key, value) in &object {
            let Some(field) = field_for(key) else {
                ignored.insert(key.clone());
                continue;
            };
            if let Err(message) = set_json(&mut record, field, value) {
                out.problems.push((origin, format!("`{key}`: {message}")));
            }
        }
        if object.is_empty() {
            continue;
        }
        out.records.push(record);
    }
    if !ignored.is_empty() {
        let ignored: Vec<String> = ignored.into_iter().collect();
        out.notes.push(format!("ignored key(s): {}", ignored.join(", ")));
    }
    out
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A list given as an array of strings, or as one string split like a cell.
fn json_list(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(split_list(&clean(text))),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(clean(text)),
                other => Err(format!("items must be strings, found {}", json_type(other))),
            })
            .filter(|item| item.as_ref().map_or(true, |text| !text.is_empty()))
            .collect(),
        other => Err(format!("must be a string or an array of strings, found {}", json_type(other))),
    }
}

fn set_json(record: &mut Record, field: Field, value: &Value) -> Result<(), String> {
    match (field, value) {
        (_, Value::Null) => Ok(()),
        (Field::Crisis, Value::Bool(flag)) => {
            record.crisis_resources |= flag;
            Ok(())
        }
        (Field::Crisis, other) => Err(format!("must be true or false, found {}", json_type(other))),
        (Field::Alternates | Field::Sources | Field::Related | Field::Questions, value) => {
            let items = json_list(value)?;
            let mut items = items.into_iter();
            match field {
                Field::Questions => {
                    if record.question.is_empty() {
                        record.question = items.next().unwrap_or_default();
                    }
                    record.alternates.extend(items);
                }
                Field::Alternates => record.alternates.extend(items),
                Field::Sources => record.sources.extend(items),
                _ => record.related.extend(items),
            }
            Ok(())
        }
        // Numeric ids (as some services export) are not entry ids: new ones are made.
        (Field::Id, Value::Number(_)) => Ok(()),
        (_, Value::String(text)) => set_text(record, field, &clean(text)),
        (_, other) => Err(format!("must be a string, found {}", json_type(other))),
    }
}

fn read_json_sources(text: &str, sources: &Value, out: &mut Read) {
    let lines = item_lines(text, Some("sources"));
    let Value::Array(items) = sources else {
        out.problems.push((at_line(1), "`sources` must be an array of sources".to_owned()));
        return;
    };
    for (index, item) in items.iter().enumerate() {
        let origin = Origin { line: lines.get(index).copied().unwrap_or(1), item: Some(index) };
        let text_of = |key: &str| match item.get(key) {
            Some(Value::String(text)) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            _ => None,
        };
        let (Some(id), Some(label), Some(citation)) = (text_of("id"), text_of("label"), text_of("citation")) else {
            out.problems.push((origin, "a source needs the strings `id`, `label` and `citation`".to_owned()));
            continue;
        };
        let source = Source { id, label, citation, doi: text_of("doi"), url: text_of("url") };
        out.sources.push((source, origin));
    }
}

/// The 1-based line where each element of the entry array starts: the
/// top-level array, or the array under `key` in the top-level object.
/// `text` has already been parsed as JSON, so this only tracks strings and
/// nesting.
fn item_lines(text: &str, key: Option<&str>) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut line = 1;
    // For each open container: is it an array, and is it the entry array?
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut last_key_at_top = String::new();
    let mut string: Option<String> = None;
    let mut escaped = false;
    let mut want_item = false;
    for ch in text.chars() {
        if ch == '\n' {
            line += 1;
        }
        if let Some(current) = string.as_mut() {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                if stack.len() == 1 {
                    last_key_at_top = std::mem::take(current);
                }
                string = None;
            } else {
                current.push(ch);
            }
            continue;
        }
        if ch.is_whitespace() {
            continue;
        }
        if want_item && ch != ']' {
            lines.push(line);
        }
        want_item = false;
        match ch {
            '"' => string = Some(String::new()),
            '[' | '{' => {
                let is_array = ch == '[';
                let target = is_array
                    && match key {
                        None => stack.is_empty(),
                        Some(key) => stack.len() == 1 && last_key_at_top.eq_ignore_ascii_case(key),
                    };
                stack.push((is_array, target));
                want_item = target;
            }
            ']' | '}' => {
                stack.pop();
            }
            ',' => want_item = stack.last().is_some_and(|&(_, target)| target),
            _ => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_items_are_found_on_their_lines() {
        let text = "[\n {\"a\": \"[x, y]\"},\n\n {\"b\": [1,\n 2]}, {\"c\": \"\\\"{\"}\n]";
        assert_eq!(item_lines(text, None), [2, 4, 5]);
        let wrapped = "{\"sources\": [{}],\n \"Entries\": [\n  {},\n  {}\n ]}";
        assert_eq!(item_lines(wrapped, Some("entries")), [3, 4]);
        assert_eq!(item_lines(wrapped, Some("sources")), [1]);
    }

    #[test]
    fn an_unclosed_quote_is_found_where_it_opens() {
        assert_eq!(unclosed_quote("q,a\n\"x\",\"y\"\"z\"\n", b','), None);
        assert_eq!(unclosed_quote("q,a\nx,\"y\nz,w\n", b','), Some(2));
        assert_eq!(unclosed_quote("q,a\nit's \"fine\",ok\n", b','), None);
    }

    #[test]
    fn headers_match_common_names() {
        assert_eq!(field_for("Alternate questions"), Some(Field::Alternates));
        assert_eq!(field_for("Source"), Some(Field::Sources));
        assert_eq!(field_for("  ANSWER "), Some(Field::Answer));
        assert_eq!(field_for("topic_id"), Some(Field::TopicId));
        assert_eq!(field_for("Metadata"), None);
    }
}
