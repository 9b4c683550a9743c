//! What happens to each update. Decisions are made once, at the top: who sent
//! it, in which kind of chat, whether it is a command, a question, a button or
//! something else; then straight-line functions send the reply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use teloxide::RequestError;
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::requests::Request;
use teloxide::types::{
    CallbackQuery, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, MediaKind, MessageId,
    MessageKind, ParseMode,
};

use super::flood::Verdict as Flood;
use super::limits::RateLimiter;
use super::render::{self, Action};
use super::{Api, Shared};
use crate::engine::Engine;
use crate::responder;

type HandlerError = Box<dyn std::error::Error + Send + Sync>;
type HandlerResult = Result<(), HandlerError>;

/// Where replies go: the API, Telegram's rate limits, and the chat.
#[derive(Clone, Copy)]
struct To<'a> {
    api: &'a Api,
    limiter: &'a RateLimiter,
    chat: ChatId,
}

/// How many times a request is retried after a 429.
const RETRIES: usize = 4;

pub(super) fn schema() -> UpdateHandler<HandlerError> {
    dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_edited_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_callback))
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
    let mention = format!("@{username}");
    let mentioned = text.to_lowercase().contains(&mention.to_lowercase());
    if private || mentioned || to_bot {
        let question = if mentioned { remove_mention(text, &mention) } else { text.to_owned() };
        return Intent::Question(question);
    }
    Intent::Ignore
}

fn is_own_command(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["start", "help", "topics", "sources", "about", "ask"].contains(&name.as_str())
        || super::ADMIN_COMMANDS.iter().any(|(command, _)| *command == name)
}

fn remove_mention(text: &str, mention: &str) -> String {
    let lower = text.to_lowercase();
    match lower.find(&mention.to_lowercase()) {
        Some(at) => format!("{}{}", &text[..at], &text[at + mention.len()..]).trim().to_owned(),
        None => text.to_owned(),
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

async fn on_message(api: Api, message: Message, shared: Arc<Shared>) -> HandlerResult {
    let Some(user) = message.from.as_ref().filter(|user| !user.is_bot) else {
        return Ok(());
    };
    let intent = intent(&message, &shared.username);
    if matches!(intent, Intent::Ignore) {
        return Ok(());
    }
    let engine = shared.engine.load_full();
    let to = To { api: &api, limiter: &shared.limiter, chat: message.chat.id };
    match flood_check(&shared, user.id.0) {
        Flood::Allow => {}
        Flood::Notice => {
            return send_chunks(to, render::with_note(&engine.kb.messages.flood, &engine.kb), None).await;
        }
        Flood::Silent => return Ok(()),
    }
    match intent {
        Intent::Command { name, argument } => command(to, &engine, &shared, user.id.0, &name, argument).await,
        Intent::Question(question) => answer(to, &engine, &shared, user.id.0, &question).await,
        Intent::Media => send_chunks(to, render::with_note(&engine.kb.messages.non_text, &engine.kb), None).await,
        Intent::Ignore => Ok(()),
    }
}

fn flood_check(shared: &Shared, user: u64) -> Flood {
    match shared.flood.lock() {
        Ok(mut guard) => guard.check(user, Instant::now()),
        Err(poisoned) => poisoned.into_inner().check(user, Instant::now()),
    }
}

async fn command(to: To<'_>, engine: &Engine, shared: &Shared, user: u64, name: &str, argument: &str) -> HandlerResult {
    let kb = &engine.kb;
    let admin_command = super::ADMIN_COMMANDS.iter().any(|(command, _)| *command == name);
    if admin_command && !shared.admins.contains(&user) {
        // For anyone else admin commands do not exist: an unknown command, never a question.
        tracing::warn!("user {user} is not an admin: /{name} refused");
        return send_chunks(to, render::with_note(&kb.messages.unknown_command, kb), None).await;
    }
    match name {
        "reload" => {
            let reloader = shared.reloader.clone();
            let report = match tokio::task::spawn_blocking(move || reloader.reload()).await {
                Ok(Ok(reloaded)) => format!("Reload done: {reloaded}"),
                Ok(Err(refused)) => format!("Reload refused: {refused}"),
                Err(error) => format!("Reload failed: {error}"),
            };
            tracing::info!("/reload by admin {user}: {report}");
            send_chunks(to, render::with_note(&report, kb), None).await
        }
        "stats" => send_chunks(to, render::with_note(&admin_stats(engine, shared), kb), None).await,
        "unanswered" => {
            let days = argument.parse::<u32>().unwrap_or(7).clamp(1, 365);
            let text = match &shared.store {
                Some(store) => store
                    .read(|connection| crate::store::unanswered(connection, std::time::SystemTime::now(), days))
                    .map_or_else(
                        |error| format!("Reading the database failed: {error:#}"),
                        |rows| crate::store::render_unanswered(&rows, days),
                    ),
                None => String::from("No database: unanswered questions are not kept."),
            };
            send_chunks(to, render::with_note(&text, kb), None).await
        }
        "start" => send_chunks(to, render::with_note(&kb.messages.welcome, kb), None).await,
        "help" => send_chunks(to, render::with_note(&kb.messages.help, kb), None).await,
        "about" => {
            let text = format!(
                "{}\n\nfaqbot {} · knowledge base version {}, loaded {}, {} entries · running for {}.",
                kb.messages.about,
                env!("CARGO_PKG_VERSION"),
                kb.stats.content_hash,
                crate::text::utc_timestamp(engine.loaded_at),
                kb.entries.len(),
                crate::text::duration_words(shared.started.elapsed()),
            );
            send_chunks(to, render::with_note(&text, kb), None).await
        }
        "sources" => send_chunks(to, sources(engine), None).await,
        "topics" => {
            let keyboard = InlineKeyboardMarkup::new(render::topic_rows(kb));
            send_chunks(to, render::with_note(&kb.messages.topics_intro, kb), Some(keyboard)).await
        }
        "ask" if argument.is_empty() => send_chunks(to, render::with_note(&kb.messages.ask_usage, kb), None).await,
        "ask" => answer(to, engine, shared, user, argument).await,
        _ => send_chunks(to, render::with_note(&kb.messages.unknown_command, kb), None).await,
    }
}

/// The reference list: each full citation, linked where it has a DOI or URL.
fn sources(engine: &Engine) -> Vec<String> {
    use teloxide::utils::html::escape;
    let kb = &engine.kb;
    let mut lines = vec![format!("<b>{}</b>", escape(&kb.messages.sources_label))];
    for source in &kb.sources {
        let line = match source.link() {
            Some(link) => format!("• <a href=\"{}\">{}</a>", escape(&link), escape(&source.citation)),
            None => format!("• {}", escape(&source.citation)),
        };
        lines.push(line);
    }
    lines.push(format!("<i>{}</i>", escape(&kb.messages.clinician_note)));
    // One message in practice; split by lines if a long list ever needs it.
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && crate::text::telegram_len(&current) + crate::text::telegram_len(&line) + 2 > 3800 {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(&line);
    }
    out.push(current);
    out
}

async fn answer(to: To<'_>, engine: &Engine, shared: &Shared, user: u64, question: &str) -> HandlerResult {
    let reply = engine.reply(question);
    tracing::debug!(kind = reply.kind.as_str(), entry = reply.entry.as_deref(), "reply");
    // Queued before sending (it is only a channel send): once the reply is
    // out, its record is on its way.
    record(shared, &reply, question, user);
    let outgoing = render::reply(&reply, &engine.kb);
    send_chunks(to, outgoing.chunks, outgoing.keyboard).await
}

/// Counts a reply (and keeps the question if nothing answered it).
fn record(shared: &Shared, reply: &crate::responder::Reply, question: &str, user: u64) {
    if let Some(store) = &shared.store {
        store.send(crate::store::Event::Reply {
            kind: reply.kind,
            entry: reply.entry.clone(),
            question: question.to_owned(),
            user,
            at: std::time::SystemTime::now(),
        });
    }
}

/// `/stats`: uptime, the knowledge version, and the stored figures.
fn admin_stats(engine: &Engine, shared: &Shared) -> String {
    let kb = &engine.kb;
    let mut text = format!(
        "Up for {}. Knowledge base: version {}, loaded {}, {} entries.",
        crate::text::duration_words(shared.started.elapsed()),
        kb.stats.content_hash,
        crate::text::utc_timestamp(engine.loaded_at),
        kb.entries.len()
    );
    let figures = match &shared.store {
        Some(store) => {
            store.read(|connection| crate::store::stats(connection, std::time::SystemTime::now())).map_or_else(
                |error| format!("Reading the database failed: {error:#}"),
                |stats| crate::store::render_stats(&stats),
            )
        }
        None => String::from("No database: figures are not kept."),
    };
    text.push_str("\n\n");
    text.push_str(&figures);
    text
}

async fn on_callback(api: Api, query: CallbackQuery, shared: Arc<Shared>) -> HandlerResult {
    let engine = shared.engine.load_full();
    let kb = &engine.kb;
    let chat = query.message.as_ref().map_or(ChatId(query.from.id.0 as i64), |message| message.chat().id);
    let to = To { api: &api, limiter: &shared.limiter, chat };
    // The message the button sits on, if Telegram still lets us edit it.
    let editable = query.message.as_ref().and_then(|message| message.regular_message()).map(|message| message.id);
    let mut popup = None;
    let result = match query.data.as_deref().and_then(Action::decode) {
        Some(Action::Entry(id)) => match kb.entry(&id) {
            Some(entry) => {
                let reply = responder::answer(kb, entry, None);
                record(&shared, &reply, &entry.question, query.from.id.0);
                let outgoing = render::reply(&reply, kb);
                send_chunks(to, outgoing.chunks, outgoing.keyboard).await
            }
            None => Ok(()),
        },
        Some(Action::Feedback(up, id)) => {
            if kb.entry(&id).is_some() {
                if let Some(store) = &shared.store {
                    store.send(crate::store::Event::Feedback { entry: id, up });
                }
                popup = Some(kb.messages.feedback_thanks.clone());
            }
            Ok(())
        }
        Some(Action::Topic(id)) => match kb.topics.iter().position(|topic| topic.id == id) {
            Some(topic) => {
                let rows: Vec<Vec<InlineKeyboardButton>> = kb
                    .entries
                    .iter()
                    .filter(|entry| entry.topic == topic)
                    .filter_map(|entry| render::button(&entry.question, &Action::Entry(entry.id.clone())))
                    .map(|button| vec![button])
                    .chain(render::button("« Topics", &Action::Topics).map(|button| vec![button]))
                    .collect();
                let text = format!("<b>{}</b>", teloxide::utils::html::escape(&kb.topics[topic].title));
                show(to, editable, text, InlineKeyboardMarkup::new(rows), kb).await
            }
            None => Ok(()),
        },
        Some(Action::Topics) => {
            let text = teloxide::utils::html::escape(&kb.messages.topics_intro);
            show(to, editable, text, InlineKeyboardMarkup::new(render::topic_rows(kb)), kb).await
        }
        None => Ok(()),
    };
    // Always acknowledge, so the button stops spinning.
    let acknowledge = || {
        let request = api.answer_callback_query(query.id.clone());
        match &popup {
            Some(text) => request.text(text.clone()),
            None => request,
        }
    };
    if let Err(error) = with_retry(acknowledge).await {
        tracing::warn!("answering a button press failed: {error}");
    }
    result
}

/// Replaces the text and keyboard of the message a button sits on, or sends a
/// new message when that one cannot be edited any more.
async fn show(
    to: To<'_>,
    editable: Option<MessageId>,
    html: String,
    keyboard: InlineKeyboardMarkup,
    kb: &crate::knowledge::KnowledgeBase,
) -> HandlerResult {
    let html = format!("{html}\n\n<i>{}</i>", teloxide::utils::html::escape(&kb.messages.clinician_note));
    if let Some(message) = editable {
        let edit = || {
            to.api
                .edit_message_text(to.chat, message, html.clone())
                .parse_mode(ParseMode::Html)
                .reply_markup(keyboard.clone())
        };
        match with_retry(edit).await {
            Ok(_) => return Ok(()),
            Err(error) => tracing::debug!("editing failed, sending anew: {error}"),
        }
    }
    send_chunks(to, vec![html], Some(keyboard)).await
}

/// Sends the chunks in order, the keyboard under the last. A failed send is
/// logged and the rest are not sent; the dispatcher carries on either way.
async fn send_chunks(to: To<'_>, chunks: Vec<String>, keyboard: Option<InlineKeyboardMarkup>) -> HandlerResult {
    let last = chunks.len().saturating_sub(1);
    for (index, chunk) in chunks.into_iter().enumerate() {
        let markup = if index == last { keyboard.clone() } else { None };
        let send = || {
            let request = to
                .api
                .send_message(to.chat, chunk.clone())
                .parse_mode(ParseMode::Html)
                .link_preview_options(no_preview());
            match &markup {
                Some(markup) => request.reply_markup(markup.clone()),
                None => request,
            }
        };
        to.limiter.acquire(to.chat.0).await;
        if let Err(error) = with_retry(send).await {
            tracing::warn!("sending a reply to chat {} failed: {error}", to.chat.0);
            return Ok(());
        }
    }
    Ok(())
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

/// Sends a request, waiting out Telegram's `retry_after` on a 429 and trying
/// again, a few times at most.
async fn with_retry<R, F>(make: F) -> Result<teloxide::requests::Output<R>, RequestError>
where
    F: Fn() -> R,
    R: Request<Err = RequestError>,
{
    let mut attempt = 0;
    loop {
        match make().send().await {
            Err(RequestError::RetryAfter(seconds)) if attempt < RETRIES => {
                attempt += 1;
                let wait = Duration::from_secs(u64::from(seconds.seconds())).min(Duration::from_secs(60));
                tracing::info!("Telegram asked to wait {}s; retrying", wait.as_secs());
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}
