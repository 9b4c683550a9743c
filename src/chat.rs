//! `faqbot chat`: an interactive terminal chat over the engine, for trying
//! the knowledge base without Telegram. Replies are wrapped at the
//! terminal's width with a hanging indent. A number picks one of the choices
//! on screen, and only while some are shown; otherwise it is asked like any
//! text. Reads plain lines when standard input is not a terminal, so it can
//! be scripted.

use std::io::{self, BufRead, IsTerminal, Write};

use crate::engine::Engine;
use crate::responder::{self, Kind, Reply};

/// The chat's own help: the Telegram help speaks of group chats and /about.
const HELP: &str = "Type a question in your own words, for example \"What are the side effects?\".\n\
Type a number to pick one of the numbered choices on screen.\n\
/topics   browse the topics, then their questions\n\
/sources  the research behind the answers\n\
/help     this help\n\
/quit     leave the chat";

/// Width used when standard output is not a terminal.
const DEFAULT_WIDTH: usize = 80;
const PREFIX: &str = "bot> ";
const INDENT: &str = "     ";

/// Runs the chat until `/quit` or end of input.
pub fn run(engine: &Engine) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    let width = console::Term::stdout().size_checked().map_or(DEFAULT_WIDTH, |(_, columns)| usize::from(columns));
    let mut session = Session { width: width.clamp(30, 120), choices: Vec::new(), recent: Vec::new() };
    writeln!(out, "{}\n", session.wrap(&engine.kb.messages.welcome, "", ""))?;
    writeln!(out, "{}\n", session.wrap("(/help for how this chat works, /quit to leave)", "", ""))?;
    if io::stdin().is_terminal() {
        let mut editor = rustyline::DefaultEditor::new()?;
        loop {
            match editor.readline("you> ") {
                Ok(line) => {
                    let _ = editor.add_history_entry(line.as_str());
                    if !session.handle(engine, &line, &mut out)? {
                        break;
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted | rustyline::error::ReadlineError::Eof) => break,
                Err(error) => return Err(error.into()),
            }
        }
    } else {
        for line in io::stdin().lock().lines() {
            if !session.handle(engine, &line?, &mut out)? {
                break;
            }
        }
    }
    Ok(())
}

/// What a number on screen stands for.
#[derive(Debug, Clone)]
enum Choice {
    Entry(String),
    Topic(usize),
}

struct Session {
    width: usize,
    /// The numbered choices currently on screen; empty when none are.
    choices: Vec<Choice>,
    /// The last few questions, for the safety screen (memory only).
    recent: Vec<String>,
}

impl Session {
    /// Handles one line; `false` ends the chat.
    fn handle(&mut self, engine: &Engine, line: &str, out: &mut impl Write) -> io::Result<bool> {
        let line = line.trim();
        let kb = &engine.kb;
        let picked = line.parse::<usize>().ok().and_then(|number| self.choices.get(number.wrapping_sub(1)).cloned());
        let reply = match (line, picked) {
            ("/quit" | "/exit" | "/q", _) => return Ok(false),
            ("/help", _) => {
                self.choices.clear();
                writeln!(out, "\n{}\n", self.wrap(HELP, INDENT, INDENT))?;
                return Ok(true);
            }
            ("/sources", _) => {
                self.choices.clear();
                for source in &kb.sources {
                    let link = source.link().map(|link| format!(" {link}")).unwrap_or_default();
                    writeln!(out, "{}", self.wrap(&format!("{}{link}", source.citation), "• ", "  "))?;
                }
                writeln!(out)?;
                return Ok(true);
            }
            ("/topics", _) => {
                self.choices = (0..kb.topics.len()).map(Choice::Topic).collect();
                writeln!(out)?;
                for (number, topic) in kb.topics.iter().enumerate() {
                    writeln!(out, "{}", self.wrap(&topic.title, &format!("{:>3}. ", number + 1), INDENT))?;
                }
                writeln!(out, "\n{}\n", self.wrap("Type a topic's number to see its questions.", "", ""))?;
                return Ok(true);
            }
            (_, Some(Choice::Topic(topic))) => {
                let title = kb.topics.get(topic).map_or("", |topic| topic.title.as_str());
                writeln!(out, "\n{title}")?;
                self.choices = kb
                    .entries
                    .iter()
                    .filter(|entry| entry.topic == topic)
                    .map(|entry| Choice::Entry(entry.id.clone()))
                    .collect();
                for (number, choice) in self.choices.iter().enumerate() {
                    if let Choice::Entry(id) = choice
                        && let Some(entry) = kb.entry(id)
                    {
                        writeln!(out, "{}", self.wrap(&entry.question, &format!("{:>3}. ", number + 1), INDENT))?;
                    }
                }
                writeln!(out)?;
                return Ok(true);
            }
            (_, Some(Choice::Entry(id))) => match kb.entry(&id) {
                Some(entry) => responder::answer(kb, entry, None),
                None => self.ask(engine, line),
            },
            (_, None) => self.ask(engine, line),
        };
        self.show(engine, &reply, out)?;
        Ok(true)
    }

    /// The reply to a typed question, read with the last few.
    fn ask(&mut self, engine: &Engine, line: &str) -> Reply {
        let reply = responder::respond_in(engine, line, &self.recent);
        self.recent.push(line.to_owned());
        if self.recent.len() > crate::question::CONTEXT_MESSAGES {
            self.recent.remove(0);
        }
        reply
    }

    fn show(&mut self, engine: &Engine, reply: &Reply, out: &mut impl Write) -> io::Result<()> {
        let text = crate::reply::plain(reply, &engine.kb.messages);
        writeln!(out, "\n{}\n", self.wrap(&text, PREFIX, INDENT))?;
        // A clarification numbers its choices in its text; an answer's related
        // questions are listed here. Anything else shows no choices.
        self.choices = match reply.kind {
            Kind::Answer | Kind::Clarify | Kind::Refusal => {
                reply.suggestions.iter().map(|id| Choice::Entry(id.clone())).collect()
            }
            _ => Vec::new(),
        };
        // A refusal numbers its general entries in its own text.
        if reply.kind == Kind::Answer && !self.choices.is_empty() {
            writeln!(out, "{INDENT}{}:", engine.kb.messages.related_label)?;
            for (number, id) in reply.suggestions.iter().enumerate() {
                if let Some(entry) = engine.kb.entry(id) {
                    let label = format!("{INDENT}{}. ", number + 1);
                    writeln!(out, "{}", self.wrap(&entry.question, &label, &format!("{INDENT}   ")))?;
                }
            }
            writeln!(out)?;
        }
        Ok(())
    }

    /// Wraps `text` at the session's width: the first line after `first`,
    /// the others after `rest`; a bullet's continuation lines line up with
    /// its text.
    fn wrap(&self, text: &str, first: &str, rest: &str) -> String {
        let mut lines = Vec::new();
        for (index, paragraph) in text.split('\n').enumerate() {
            let lead = if index == 0 { first } else { rest };
            if paragraph.trim().is_empty() {
                lines.push(String::new());
                continue;
            }
            let hang = match paragraph.strip_prefix("• ") {
                Some(_) => format!("{rest}  "),
                None => rest.to_owned(),
            };
            let mut line = lead.to_owned();
            let mut empty = true;
            for word in paragraph.split(' ').filter(|word| !word.is_empty()) {
                let fits = line.chars().count() + 1 + word.chars().count() <= self.width;
                if !empty && !fits {
                    lines.push(std::mem::replace(&mut line, hang.clone()));
                    empty = true;
                }
                if !empty {
                    line.push(' ');
                }
                line.push_str(word);
                empty = false;
            }
            lines.push(line);
        }
        lines.join("\n")
    }
}
