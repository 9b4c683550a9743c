//! `faqbot chat`: an interactive terminal chat over the engine, for trying
//! the knowledge base without Telegram. Suggestions are numbered; typing a
//! number opens that entry. Reads plain lines when standard input is not a
//! terminal, so it can be scripted.

use std::io::{self, BufRead, IsTerminal, Write};

use crate::engine::Engine;
use crate::responder::{self, Kind, Reply};

const HELP: &str = "Type a question, a number to pick a suggestion, /topics to browse, /sources, /help, or /quit.";

/// Runs the chat until `/quit` or end of input.
pub fn run(engine: &Engine) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}\n\n({HELP})\n", engine.kb.messages.welcome)?;
    let mut session = Session::default();
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

/// What the last reply offered, so a number can pick it.
#[derive(Default)]
struct Session {
    choices: Vec<String>,
}

impl Session {
    /// Handles one line; `false` ends the chat.
    fn handle(&mut self, engine: &Engine, line: &str, out: &mut impl Write) -> io::Result<bool> {
        let line = line.trim();
        let kb = &engine.kb;
        let reply = match line {
            "/quit" | "/exit" | "/q" => return Ok(false),
            "/help" => {
                writeln!(out, "{}\n\n{HELP}\n", kb.messages.help)?;
                return Ok(true);
            }
            "/sources" => {
                for source in &kb.sources {
                    let link = source.link().map(|link| format!(" {link}")).unwrap_or_default();
                    writeln!(out, "• {}{link}", source.citation)?;
                }
                writeln!(out)?;
                return Ok(true);
            }
            "/topics" => {
                self.choices.clear();
                for (topic_index, topic) in kb.topics.iter().enumerate() {
                    writeln!(out, "{}", topic.title)?;
                    for entry in kb.entries.iter().filter(|entry| entry.topic == topic_index) {
                        self.choices.push(entry.id.clone());
                        writeln!(out, "  {}. {}", self.choices.len(), entry.question)?;
                    }
                }
                writeln!(out)?;
                return Ok(true);
            }
            _ => match line.parse::<usize>().ok().and_then(|n| self.choices.get(n.wrapping_sub(1))) {
                Some(id) => match kb.entry(id) {
                    Some(entry) => responder::answer(kb, entry, None),
                    None => engine.reply(line),
                },
                None => engine.reply(line),
            },
        };
        self.show(engine, &reply, out)?;
        Ok(true)
    }

    fn show(&mut self, engine: &Engine, reply: &Reply, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "\nbot> {}\n", reply.text.replace('\n', "\n     "))?;
        self.choices = reply.suggestions.clone();
        if !self.choices.is_empty() && reply.kind != Kind::Clarify {
            writeln!(out, "     {}:", engine.kb.messages.related_label)?;
            for (number, id) in self.choices.iter().enumerate() {
                if let Some(entry) = engine.kb.entry(id) {
                    writeln!(out, "     {}. {}", number + 1, entry.question)?;
                }
            }
            writeln!(out)?;
        }
        Ok(())
    }
}
