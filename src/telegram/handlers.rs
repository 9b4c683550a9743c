//! What happens to each update. Decisions are made once, at the top: who sent
//! it, in which kind of chat, whether it is a command, a question, a button or
//! something else. `triage` decides on arrival whether an update is kept at
//! all; `plan` turns a kept update into the steps of its reply (messages to
//! send, a message to edit, a button to acknowledge). Planning does no I/O but
//! the store's figures and `/reload`; `deliver` sends the steps.

use teloxide::types::{
    CallbackQuery, CallbackQueryId, ChatId, InlineKeyboardMarkup, MediaKind, Message, MessageId, MessageKind, Update,
    UpdateKind,
};

use super::Shared;
use super::render::{self, Action};
use crate::engine::Engine;
use crate::reply::Style;
use crate::responder;

/// One thing the bot does to reply, in order.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// Send one HTML message, with a keyboard under it.
    Send { chat: ChatId, html: String, keyboard: Option<InlineKeyboardMarkup> },
    /// Replace a message's text and keyboard; send anew if it cannot be edited.
    Edit { chat: ChatId, message: MessageId, html: String, keyboard: InlineKeyboardMarkup },
    /// Stop a pressed button spinning, with an optional pop-up.
    Ack { id: CallbackQueryId, text: Option<String> },
}

/// Whether an update is kept for a reply, and where the reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Triage {
    Ignore,
    /// A message for the bot: the flood guard counts it for `user`.
    Message {
        chat: i64,
        user: u64,
    },
    Button {
        chat: i64,
    },
}

/// Decides on arrival whether an update needs a reply. Never panics.
pub(super) fn triage(update: &Update, username: &str) -> Triage {
    match &update.kind {
        UpdateKind::Message(message) | UpdateKind::EditedMessage(message) => {
            let Some(user) = message.from.as_ref().filter(|user| !user.is_bot) else {
                return Triage::Ignore;
            };
            match intent(message, username) {
                Intent::Ignore => Triage::Ignore,
                _ => Triage::Message { chat: message.chat.id.0, user: user.id.0 },
            }
        }
        UpdateKind::CallbackQuery(query) => Triage::Button { chat: callback_chat(query).0 },
        _ => Triage::Ignore,
    }
}

fn callback_chat(query: &CallbackQuery) -> ChatId {
    query.message.as_ref().map_or(ChatId(query.from.id.0 as i64), |message| message.chat().id)
}

/// The steps of the reply to a kept update. `fresh` is false when a reply
/// interrupted by a restart is resumed: its figures were already counted.
pub(super) fn plan(shared: &Shared, update: &Update, fresh: bool) -> Vec<Step> {
    let engine = shared.engine.load_full();
    match &update.kind {
        UpdateKind::Message(message) | UpdateKind::EditedMessage(message) => {
            let Some(user) = message.from.as_ref().filter(|user| !user.is_bot) else {
                return Vec::new();
            };
            let to = message.chat.id;
            let steps = match intent(message, &shared.username) {
                Intent::Command { name, argument } => {
                    command(&engine, shared, (to.0, user.id.0), &name, argument, fresh)
                }
                Intent::Question(question) => answer(&engine, shared, (to.0, user.id.0), &question, fresh),
                Intent::Media => texts(render::with_note(&engine.kb.messages.non_text, &engine.kb), None),
                Intent::Ignore => Vec::new(),
            };
            to_chat(steps, to)
        }
        UpdateKind::CallbackQuery(query) => on_callback(&engine, shared, query, fresh),
        _ => Vec::new(),
    }
}

/// The flood notice, ending with the clinician note like every reply.
pub(super) fn flood_notice(shared: &Shared, chat: ChatId) -> Vec<Step> {
    let engine = shared.engine.load_full();
    to_chat(texts(render::with_note(&engine.kb.messages.flood, &engine.kb), None), chat)
}

/// What a handler that panicked sends instead, with the clinician note.
pub(super) fn apology(shared: &Shared, chat: ChatId) -> Vec<Step> {
    let engine = shared.engine.load_full();
    let text = "Sorry, something went wrong while answering that message. Please try asking in other words.";
    to_chat(texts(render::with_note(text, &engine.kb), None), chat)
}

/// Messages whose chat is filled in later.
type Texts = Vec<(String, Option<InlineKeyboardMarkup>)>;

fn texts(chunks: Vec<String>, keyboard: Option<InlineKeyboardMarkup>) -> Texts {
    let last = chunks.len().saturating_sub(1);
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| (chunk, if index == last { keyboard.clone() } else { None }))
        .collect()
}

fn to_chat(texts: Texts, chat: ChatId) -> Vec<Step> {
    texts.into_iter().map(|(html, keyboard)| Step::Send { chat, html, keyboard }).collect()
}

/// What a message asks of the bot.
enum Intent<'a> {
    Command { name: String, argument: &'a str },
    Question(String),
    Media,
    Ignore,
}

fn intent<'a>(message: &'a Message, username: &str) -> Intent<'a> {
    let private = message.chat.is_private();
    let to_bot = private || replies_to_bot(message, username);
    let Some(text) = message.text() else {
        return if to_bot && is_media(message) { Intent::Media } else { Intent::Ignore };
    };
    if let Some(command) = text.strip_prefix('/') {
        let (head, argument) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
        let (name, target) = head.split_once('@').map_or((head, None), |(name, target)| (name, Some(target)));
        // `/start@otherbot` in a group is for another bot.
        if target.is_some_and(|target| !target.eq_ignore_ascii_case(username)) {
            return Intent::Ignore;
        }
        if !private && target.is_none() && !is_own_command(name) {
            return Intent::Ignore;
        }
        return Intent::Command { name: name.to_ascii_lowercase(), argument: argument.trim() };
    }
    let mentioned = find_mention(text, username);
    if private || mentioned.is_some() || to_bot {
        let question = match mentioned {
            Some(at) => remove_range(text, at, username.len() + 1),
            None => text.to_owned(),
        };
        return Intent::Question(question);
    }
    Intent::Ignore
}

fn is_own_command(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["start", "help", "topics", "sources", "about", "ask"].contains(&name.as_str())
        || super::ADMIN_COMMANDS.iter().any(|(command, _)| *command == name)
}

/// The byte offset of `@username` in `text`, matched ASCII-case-insensitively
/// (usernames are ASCII) and not followed by more of a longer name. Offsets
/// come from the original text, so cutting there is always on a character
/// boundary, whatever case mapping would do to other characters.
fn find_mention(text: &str, username: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let name = username.as_bytes();
    let length = name.len() + 1;
    text.match_indices('@').map(|(at, _)| at).find(|&at| {
        bytes.get(at + 1..at + length).is_some_and(|candidate| candidate.eq_ignore_ascii_case(name))
            && !bytes.get(at + length).is_some_and(|next| next.is_ascii_alphanumeric() || *next == b'_')
    })
}

/// `text` without the `length` bytes at `at` (an ASCII mention), trimmed.
fn remove_range(text: &str, at: usize, length: usize) -> String {
    match (text.get(..at), text.get(at + length..)) {
        (Some(before), Some(after)) => format!("{before}{after}").trim().to_owned(),
        _ => text.to_owned(),
    }
}

fn replies_to_bot(message: &Message, username: &str) -> bool {
    message.reply_to_message().and_then(|reply| reply.from.as_ref()).is_some_and(|from| {
        from.is_bot && from.username.as_deref().is_some_and(|name| name.eq_ignore_ascii_case(username))
    })
}

/// Stickers, photos, voice, files and the like (not service messages).
fn is_media(message: &Message) -> bool {
    match &message.kind {
        MessageKind::Common(common) => !matches!(common.media_kind, MediaKind::Text(_) | MediaKind::Migration(_)),
        _ => false,
    }
}

fn command(
    engine: &Engine,
    shared: &Shared,
    (chat, user): (i64, u64),
    name: &str,
    argument: &str,
    fresh: bool,
) -> Texts {
    let kb = &engine.kb;
    let note = |text: &str| texts(render::with_note(text, kb), None);
    let admin_command = super::ADMIN_COMMANDS.iter().any(|(command, _)| *command == name);
    if admin_command && !shared.admins.contains(&user) {
        // For anyone else admin commands do not exist: an unknown command, never a question.
        tracing::warn!("user {user} is not an admin: /{name} refused");
        return note(&kb.messages.unknown_command);
    }
    match name {
        "reload" => {
            // Planning runs on a blocking thread: reloading here is fine.
            let report = match shared.reloader.reload() {
                Ok(reloaded) => format!("Reload done: {reloaded}"),
                Err(refused) => format!("Reload refused: {refused}"),
            };
            tracing::info!("/reload by admin {user}: {report}");
            note(&report)
        }
        "stats" => note(&admin_stats(engine, shared)),
        "unanswered" => {
            // Grouping embeds the questions: planning runs on a blocking thread.
            let days = argument.parse::<u32>().unwrap_or(7).clamp(1, 365);
            note(&crate::report::for_telegram(engine, &shared.store, days))
        }
        "start" => note(&kb.messages.welcome),
        "help" => note(&kb.messages.help),
        "about" => note(&format!(
            "{}\n\nfaqbot {} · knowledge base version {}, loaded {}, {} entries · running for {}.",
            kb.messages.about,
            env!("CARGO_PKG_VERSION"),
            kb.stats.content_hash,
            crate::text::utc_timestamp(engine.loaded_at),
            kb.entries.len(),
            crate::text::duration_words(shared.started.elapsed()),
        )),
        "sources" => texts(render::sources_list(kb), None),
        "topics" => texts(
            render::with_note(&kb.messages.topics_intro, kb),
            Some(InlineKeyboardMarkup::new(render::topic_rows(kb))),
        ),
        "ask" if argument.is_empty() => note(&kb.messages.ask_usage),
        "ask" => answer(engine, shared, (chat, user), argument, fresh),
        _ => note(&kb.messages.unknown_command),
    }
}

fn answer(engine: &Engine, shared: &Shared, (chat, user): (i64, u64), question: &str, fresh: bool) -> Texts {
    let now = std::time::Instant::now();
    let lock = || shared.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (context, known) = {
        let mut recent = lock();
        let context = recent.context((chat, user), now);
        recent.push((chat, user), question, now);
        context
    };
    let (reply, vectors) = responder::respond_remembering(engine, question, &context, &known);
    lock().remember((chat, user), question, vectors);
    tracing::debug!(kind = reply.kind.as_str(), entry = reply.entry.as_deref(), "reply");
    if fresh {
        record(shared, &reply, question, user);
    }
    let outgoing = render::reply(&reply, &engine.kb);
    texts(outgoing.chunks, outgoing.keyboard)
}

/// Counts a reply (and keeps the question if nothing answered it).
fn record(shared: &Shared, reply: &crate::responder::Reply, question: &str, user: u64) {
    shared.store.send(crate::store::Event::Reply {
        kind: reply.kind,
        entry: reply.entry.clone(),
        question: question.to_owned(),
        user,
        at: std::time::SystemTime::now(),
    });
}

/// `/stats`: uptime, the knowledge version, delivery, and the stored figures,
/// with a warning when the store has lost some of them.
fn admin_stats(engine: &Engine, shared: &Shared) -> String {
    let kb = &engine.kb;
    let now = std::time::SystemTime::now();
    let mut text = format!(
        "Up for {}. Knowledge base: version {}, loaded {}, {} entries.",
        crate::text::duration_words(shared.started.elapsed()),
        kb.stats.content_hash,
        crate::text::utc_timestamp(engine.loaded_at),
        kb.entries.len()
    );
    let store = &shared.store;
    if let Some(warning) = store.health().warning() {
        text.push_str("\n\n");
        text.push_str(&warning);
    }
    let figures = store.read(|connection| crate::store::stats(connection, now)).map_or_else(
        |error| format!("Reading the database failed: {error:#}"),
        |stats| crate::store::render_stats(&stats),
    );
    text.push_str("\n\n");
    text.push_str(&figures);
    match store.delivery(now) {
        Ok(delivery) => {
            text.push('\n');
            text.push_str(&delivery.render());
        }
        Err(error) => text.push_str(&format!("\nReading delivery figures failed: {error:#}")),
    }
    text
}

fn on_callback(engine: &Engine, shared: &Shared, query: &CallbackQuery, fresh: bool) -> Vec<Step> {
    let kb = &engine.kb;
    let chat = callback_chat(query);
    // The message the button sits on, if Telegram still lets us edit it.
    let editable = query.message.as_ref().and_then(|message| message.regular_message()).map(|message| message.id);
    let mut popup = None;
    let mut steps = Vec::new();
    match query.data.as_deref().and_then(Action::decode) {
        Some(Action::Entry(id)) => {
            if let Some(entry) = kb.entry(&id) {
                let reply = responder::answer(kb, entry, None);
                if fresh {
                    record(shared, &reply, &entry.question, query.from.id.0);
                }
                let outgoing = render::reply(&reply, kb);
                steps = to_chat(texts(outgoing.chunks, outgoing.keyboard), chat);
            }
        }
        Some(Action::Feedback(up, id)) if kb.entry(&id).is_some() => {
            if fresh {
                shared.store.send(crate::store::Event::Feedback { entry: id, up });
            }
            popup = Some(kb.messages.feedback_thanks.clone());
        }
        Some(Action::Feedback(..)) => {}
        Some(Action::Topic(id)) => {
            if let Some((text, keyboard)) = render::topic_menu(&id, kb) {
                steps = show(chat, editable, text, keyboard);
            }
        }
        Some(Action::Topics) => {
            let text = render::menu_text(&kb.messages.topics_intro, Style::Plain, kb);
            steps = show(chat, editable, text, InlineKeyboardMarkup::new(render::topic_rows(kb)));
        }
        None => {}
    }
    // Acknowledged first, so the button stops spinning at once.
    steps.insert(0, Step::Ack { id: query.id.clone(), text: popup });
    steps
}

/// Replaces the text and keyboard of the message a button sits on, or sends a
/// new message when that one cannot be edited any more.
fn show(chat: ChatId, editable: Option<MessageId>, html: String, keyboard: InlineKeyboardMarkup) -> Vec<Step> {
    match editable {
        Some(message) => vec![Step::Edit { chat, message, html, keyboard }],
        None => vec![Step::Send { chat, html, keyboard: Some(keyboard) }],
    }
}
