//! A reply as structure, and its layout. The responder builds a `Reply`;
//! the renderers (`plain` here for the CLI, `telegram::render` for HTML)
//! lay it out through `layout`, which is the only place that adds the
//! clinician note, so every reply of every kind carries it exactly once.

use crate::knowledge::{Entry, Messages};
use crate::text::telegram_len;

/// What kind of reply this is; the names are the JSON contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Answer,
    Clarify,
    NoMatch,
    Crisis,
    Refusal,
    Smalltalk,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Answer, Kind::Clarify, Kind::NoMatch, Kind::Crisis, Kind::Refusal, Kind::Smalltalk];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Answer => "answer",
            Kind::Clarify => "clarify",
            Kind::NoMatch => "no_match",
            Kind::Crisis => "crisis",
            Kind::Refusal => "refusal",
            Kind::Smalltalk => "smalltalk",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One piece of a reply's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Paragraph(String),
    /// A list, with the line that introduces it (empty when there is none).
    List {
        lead: String,
        items: Vec<String>,
        numbered: bool,
    },
    /// The crisis lines (`Messages::crisis_resources`), where a crisis reply
    /// puts them.
    CrisisLines,
}

/// What the safety net adds after the body, in rising order of concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Net {
    None,
    /// One line: where to turn in danger (every no-match and refusal).
    Pointer,
    /// The crisis lines.
    Lines,
    /// A gentle question ("Are you thinking about suicide?") and the lines.
    CheckIn,
}

/// One reply to one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub kind: Kind,
    /// The answering entry's id, for `Answer` only.
    pub entry: Option<String>,
    /// The best retrieval score behind the reply, when there was a search.
    pub score: Option<f32>,
    /// Shown first and in bold: an answer's question.
    pub title: Option<String>,
    pub blocks: Vec<Block>,
    /// The labels of the sources an answer cites.
    pub sources: Vec<String>,
    pub net: Net,
    /// Entry ids to offer: related entries for an answer, the candidates for
    /// a clarification, general entries under a refusal.
    pub suggestions: Vec<String>,
}

impl Reply {
    /// A reply of `kind` with nothing in it yet.
    pub fn new(kind: Kind) -> Reply {
        Reply {
            kind,
            entry: None,
            score: None,
            title: None,
            blocks: Vec::new(),
            sources: Vec::new(),
            net: Net::None,
            suggestions: Vec::new(),
        }
    }

    /// An entry's answer, citing the sources labelled `sources`.
    pub fn answer(entry: &Entry, sources: Vec<String>, score: Option<f32>) -> Reply {
        Reply {
            entry: Some(entry.id.clone()),
            score,
            title: Some(entry.question.clone()),
            blocks: blocks_of(&entry.answer),
            sources,
            net: if entry.crisis_resources { Net::Lines } else { Net::None },
            suggestions: entry.related.clone(),
            ..Reply::new(Kind::Answer)
        }
    }

    /// The same reply with at least `net` under it.
    pub fn with_net(self, net: Net) -> Reply {
        Reply { net: self.net.max(net), ..self }
    }

    /// Whether the crisis lines show, wherever they are.
    pub fn shows_crisis_lines(&self) -> bool {
        matches!(self.net, Net::Lines | Net::CheckIn) || self.blocks.contains(&Block::CrisisLines)
    }
}

/// An answer's text as blocks: paragraphs at blank lines; within one, lines
/// starting with "•" are a list, introduced by the lines before them.
pub fn blocks_of(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    for paragraph in text.split("\n\n").map(str::trim).filter(|paragraph| !paragraph.is_empty()) {
        let lines: Vec<&str> = paragraph.lines().collect();
        let first_item = lines.iter().position(|line| line.trim_start().starts_with('•'));
        let is_list = first_item.is_some_and(|at| lines.iter().skip(at).all(|line| line.trim_start().starts_with('•')));
        match first_item {
            Some(at) if is_list => {
                let (lead, items) = lines.split_at(at);
                blocks.push(Block::List {
                    lead: lead.join("\n"),
                    items: items
                        .iter()
                        .map(|item| item.trim_start().trim_start_matches('•').trim().to_owned())
                        .collect(),
                    numbered: false,
                });
            }
            _ => blocks.push(Block::Paragraph(paragraph.to_owned())),
        }
    }
    blocks
}

/// How a paragraph of the layout is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    Italic,
}

/// The reply as paragraphs in reading order, each with its style: the
/// title, the body, the sources, what the safety net adds, and last the
/// clinician note (after a crisis reply, the note that help is there now).
pub fn layout(reply: &Reply, messages: &Messages) -> Vec<(String, Style)> {
    let mut out: Vec<(String, Style)> = Vec::new();
    let mut plain = |text: String| out.push((text, Style::Plain));
    if let Some(title) = &reply.title {
        plain(title.clone());
    }
    for block in &reply.blocks {
        match block {
            Block::Paragraph(text) => plain(text.clone()),
            Block::List { lead, items, numbered } => {
                let mut lines: Vec<String> = Vec::with_capacity(items.len() + 1);
                if !lead.is_empty() {
                    lines.push(lead.clone());
                }
                for (number, item) in items.iter().enumerate() {
                    lines.push(if *numbered { format!("{}. {item}", number + 1) } else { format!("• {item}") });
                }
                plain(lines.join("\n"));
            }
            Block::CrisisLines => plain(messages.crisis_resources.clone()),
        }
    }
    if !reply.sources.is_empty() {
        plain(format!("{}: {}", messages.sources_label, reply.sources.join("; ")));
    }
    // The crisis lines show once: a check-in leads into them (its text ends
    // "reach one of these lines:"), so a body that already shows them gets
    // nothing more.
    let body_has_lines = reply.blocks.contains(&Block::CrisisLines);
    match reply.net {
        Net::None => {}
        Net::Lines | Net::CheckIn if body_has_lines => {}
        Net::Pointer => plain(messages.crisis_pointer.clone()),
        Net::Lines => plain(messages.crisis_resources.clone()),
        Net::CheckIn => plain(format!("{}\n{}", messages.check_in, messages.crisis_resources)),
    }
    if let Some(first) = out.first_mut().filter(|_| reply.title.is_some()) {
        first.1 = Style::Bold;
    }
    let note = if reply.kind == Kind::Crisis { &messages.crisis_note } else { &messages.clinician_note };
    out.push((note.clone(), Style::Italic));
    out
}

/// The reply as plain text, paragraphs apart: the CLI's rendering.
pub fn plain(reply: &Reply, messages: &Messages) -> String {
    layout(reply, messages).into_iter().map(|(text, _)| text).collect::<Vec<_>>().join("\n\n")
}

/// The most an answer can show, as Telegram counts it: with its sources, a
/// check-in with the crisis lines (the most the safety net adds) and the
/// clinician note. Validation and import keep this within one message.
pub fn longest_answer_len(entry: &Entry, sources: Vec<String>, messages: &Messages) -> usize {
    let reply = Reply::answer(entry, sources, None).with_net(Net::CheckIn);
    telegram_len(&plain(&reply, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_splits_into_paragraphs_and_lists() {
        let blocks = blocks_of("Intro line.\n\nFamily can help:\n• Drive them.\n•Stay.\n\nLast.");
        assert_eq!(
            blocks,
            vec![
                Block::Paragraph("Intro line.".into()),
                Block::List {
                    lead: "Family can help:".into(),
                    items: vec!["Drive them.".into(), "Stay.".into()],
                    numbered: false
                },
                Block::Paragraph("Last.".into()),
            ]
        );
    }

    #[test]
    fn a_bullet_inside_prose_keeps_the_paragraph_whole() {
        let blocks = blocks_of("• first\nthen prose");
        assert_eq!(blocks, vec![Block::Paragraph("• first\nthen prose".into())]);
    }

    fn messages() -> Messages {
        let pairs = [
            ("clinician_note", "NOTE"),
            ("crisis_note", "HELP NOW"),
            ("crisis_resources", "LINES"),
            ("check_in", "ARE YOU OK?"),
            ("crisis_pointer", "POINTER"),
            ("sources_label", "Sources"),
        ];
        Messages::from_pairs_or_empty(&pairs.into_iter().map(|(key, text)| (key.to_owned(), text.to_owned())).collect())
    }

    #[test]
    fn the_note_comes_once_and_last_and_the_lines_once() {
        let messages = messages();
        let mut reply = Reply::new(Kind::NoMatch);
        reply.blocks.push(Block::Paragraph("no answer".into()));
        reply.net = Net::Pointer;
        assert_eq!(plain(&reply, &messages), "no answer\n\nPOINTER\n\nNOTE");
        let checked = reply.with_net(Net::CheckIn);
        assert_eq!(plain(&checked, &messages), "no answer\n\nARE YOU OK?\nLINES\n\nNOTE");
        // A weaker net never replaces a stronger one.
        assert_eq!(checked.clone().with_net(Net::Pointer).net, Net::CheckIn);

        let mut crisis = Reply::new(Kind::Crisis);
        crisis.blocks = vec![Block::CrisisLines, Block::Paragraph("warm".into())];
        let crisis = crisis.with_net(Net::CheckIn);
        assert_eq!(plain(&crisis, &messages), "LINES\n\nwarm\n\nHELP NOW");
        assert!(crisis.shows_crisis_lines());
    }

    #[test]
    fn the_title_is_bold_and_the_note_italic() {
        let messages = messages();
        let mut reply = Reply::new(Kind::Answer);
        reply.title = Some("Q?".into());
        reply.blocks.push(Block::List { lead: String::new(), items: vec!["a".into(), "b".into()], numbered: true });
        reply.sources = vec!["One".into(), "Two".into()];
        let layout = layout(&reply, &messages);
        assert_eq!(
            layout,
            vec![
                ("Q?".into(), Style::Bold),
                ("1. a\n2. b".into(), Style::Plain),
                ("Sources: One; Two".into(), Style::Plain),
                ("NOTE".into(), Style::Italic),
            ]
        );
        assert!(!reply.shows_crisis_lines());
    }
}
