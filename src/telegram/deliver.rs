//! Answering from the inbox. A scheduler hands the oldest waiting update of
//! each idle chat to a bounded set of workers: at most one update per chat in
//! flight (replies keep their order), chats served oldest first, so one busy
//! chat never holds up the others. A worker plans the reply on a blocking
//! thread (a panic there costs that update an apology, nothing more), then
//! sends its steps, recording each confirmed message, and finally the outcome.
//!
//! Transient failures (network errors, 5xx, bodies that are not JSON, 429 of
//! any length) are retried with backoff until the reply goes out or the
//! update is older than the age limit; permanent refusals (blocked, chat not
//! found) are not retried; "can't parse entities" is resent as plain text. On
//! shutdown no new attempt starts: what is not sent stays in the inbox.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::requests::Request;
use teloxide::types::{ChatId, LinkPreviewOptions, ParseMode, Update};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::handlers::{self, Step};
use super::{Api, Shared, backoff};
use crate::store::{NOTICE_FIRST, NOTICE_ONLY, Outcome, Pending};

/// What the scheduler and its workers share.
pub(super) struct Ctx {
    pub api: Api,
    pub shared: Arc<Shared>,
    /// Woken when updates arrive.
    pub wake: Notify,
    pub stop: watch::Receiver<bool>,
    pub workers: usize,
    pub give_up_after: Duration,
}

impl Ctx {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs `work` unless shutdown comes first; `None` if it did.
    async fn unless_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut stop = self.stop.clone();
        tokio::select! {
            value = work => Some(value),
            _ = stop.wait_for(|stopping| *stopping) => None,
        }
    }
}

/// How a worker left an update.
enum Done {
    Finished,
    /// Shutdown came first: the update stays in the inbox for the next start.
    Interrupted,
}

/// Hands out work until shutdown, then lets the attempts in flight finish
/// (for at most `grace`) and returns.
pub(super) async fn run(ctx: Arc<Ctx>, grace: Duration) {
    let mut tasks: JoinSet<Done> = JoinSet::new();
    // Task id → (chat, inbox row), to free the chat even when a task panics.
    let mut running: HashMap<tokio::task::Id, (i64, i64)> = HashMap::new();
    let mut busy: HashSet<i64> = HashSet::new();
    let mut stop = ctx.stop.clone();
    loop {
        if ctx.stopping() {
            break;
        }
        let free = ctx.workers.saturating_sub(tasks.len());
        if free > 0 {
            let store = ctx.shared.store.clone();
            let taken = busy.clone();
            match tokio::task::spawn_blocking(move || store.inbox_next(&taken, free)).await {
                Ok(Ok(rows)) => {
                    for row in rows {
                        busy.insert(row.lane);
                        let (lane, id) = (row.lane, row.id);
                        let handle = tasks.spawn(work(ctx.clone(), row));
                        running.insert(handle.id(), (lane, id));
                    }
                }
                Ok(Err(error)) => tracing::error!("{error:#}"),
                Err(error) => tracing::error!("reading the inbox failed: {error}"),
            }
        }
        tokio::select! {
            _ = ctx.wake.notified() => {}
            Some(joined) = tasks.join_next_with_id() => finished(&ctx, joined, &mut running, &mut busy),
            _ = stop.wait_for(|stopping| *stopping) => {}
            // In case a wake-up was missed or the database hiccuped.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let drained = tokio::time::timeout(grace, async {
        while let Some(joined) = tasks.join_next_with_id().await {
            finished(&ctx, joined, &mut running, &mut busy);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("{} reply(ies) still being sent after {grace:?}; they stay in the inbox", tasks.len());
        tasks.abort_all();
    }
}

fn finished(
    ctx: &Arc<Ctx>,
    joined: Result<(tokio::task::Id, Done), tokio::task::JoinError>,
    running: &mut HashMap<tokio::task::Id, (i64, i64)>,
    busy: &mut HashSet<i64>,
) {
    let id = match &joined {
        Ok((id, _)) => *id,
        Err(error) => error.id(),
    };
    let Some((lane, row)) = running.remove(&id) else { return };
    busy.remove(&lane);
    if let Err(error) = joined {
        // Only our sending code runs in the task itself; never expected.
        tracing::error!("a reply task for chat {lane} failed: {error}");
        let store = ctx.shared.store.clone();
        tokio::task::spawn_blocking(move || record(&store, row, Outcome::Failed));
    }
    // A freed chat may have more waiting.
    ctx.wake.notify_one();
}

fn record(store: &crate::store::Store, row: i64, outcome: Outcome) {
    if let Err(error) = store.inbox_finish(row, outcome) {
        tracing::error!("{error:#}");
    }
}

/// Plans and sends the reply to one update, and records how it went.
async fn work(ctx: Arc<Ctx>, row: Pending) -> Done {
    let deadline = deadline(row.received, ctx.give_up_after);
    let chat = ChatId(row.lane);
    let steps = match serde_json::from_str::<Update>(&row.body) {
        Err(error) => {
            tracing::error!("update {} in the inbox cannot be read ({error}); skipped", row.update_id);
            return finish(&ctx, &row, Outcome::Failed).await;
        }
        Ok(update) => {
            let shared = ctx.shared.clone();
            let (flags, fresh) = (row.flags, row.progress == 0);
            let planned = tokio::task::spawn_blocking(move || {
                let mut steps = Vec::new();
                if flags == NOTICE_ONLY || flags == NOTICE_FIRST {
                    steps.extend(handlers::flood_notice(&shared, chat));
                }
                if flags != NOTICE_ONLY {
                    steps.extend(handlers::plan(&shared, &update, fresh));
                }
                steps
            })
            .await;
            match planned {
                Ok(steps) => steps,
                Err(error) => {
                    // The panic message went to the log through the panic hook;
                    // the user gets an apology and the bot carries on.
                    tracing::error!("handling update {} panicked ({error}); answering with an apology", row.update_id);
                    let steps = handlers::apology(&ctx.shared, chat);
                    return match send_all(&ctx, &row, steps, deadline).await {
                        Some(_) => finish(&ctx, &row, Outcome::Failed).await,
                        None => Done::Interrupted,
                    };
                }
            }
        }
    };
    match send_all(&ctx, &row, steps, deadline).await {
        Some(outcome) => finish(&ctx, &row, outcome).await,
        None => Done::Interrupted,
    }
}

fn deadline(received: SystemTime, limit: Duration) -> Instant {
    let age = SystemTime::now().duration_since(received).unwrap_or_default();
    Instant::now() + limit.saturating_sub(age)
}

async fn finish(ctx: &Ctx, row: &Pending, outcome: Outcome) -> Done {
    let store = ctx.shared.store.clone();
    let id = row.id;
    let _ = tokio::task::spawn_blocking(move || record(&store, id, outcome)).await;
    Done::Finished
}

/// Sends the steps not sent before, recording each; `None` on shutdown.
async fn send_all(ctx: &Ctx, row: &Pending, steps: Vec<Step>, deadline: Instant) -> Option<Outcome> {
    let last = steps.len().saturating_sub(1);
    for (index, step) in steps.into_iter().enumerate().skip(row.progress) {
        match step_once(ctx, step, deadline).await {
            // The outcome, recorded next, covers the last step.
            Ok(()) if index == last => {}
            Ok(()) => {
                let store = ctx.shared.store.clone();
                let id = row.id;
                let recorded = tokio::task::spawn_blocking(move || store.inbox_progress(id, index + 1)).await;
                if let Ok(Err(error)) = recorded {
                    tracing::error!("{error:#}");
                }
            }
            Err(Failure::Interrupted) => return None,
            Err(Failure::GaveUp) => {
                tracing::warn!(
                    "gave up on the reply to update {} for chat {}: Telegram kept failing for {:?}",
                    row.update_id,
                    row.lane,
                    ctx.give_up_after
                );
                return Some(Outcome::GivenUp);
            }
            Err(Failure::Refused(error)) => {
                tracing::warn!("Telegram refused the reply to chat {}: {}", row.lane, describe(&error));
                return Some(Outcome::Refused);
            }
            Err(Failure::PlainText) => {}
        }
    }
    Some(Outcome::Sent)
}

enum Failure {
    Interrupted,
    GaveUp,
    Refused(RequestError),
    /// Telegram could not parse the HTML: send as plain text.
    PlainText,
}

/// Sends one step, retrying transient failures.
async fn step_once(ctx: &Ctx, step: Step, deadline: Instant) -> Result<(), Failure> {
    let api = &ctx.api;
    match step {
        Step::Send { chat, html, keyboard } => {
            let send = |plain: bool| {
                let request = if plain {
                    api.send_message(chat, strip_html(&html))
                } else {
                    api.send_message(chat, html.clone()).parse_mode(ParseMode::Html)
                };
                let request = request.link_preview_options(no_preview());
                match &keyboard {
                    Some(markup) => request.reply_markup(markup.clone()),
                    None => request,
                }
            };
            match retry(ctx, chat.0, deadline, || send(false)).await {
                Err(Failure::PlainText) => {
                    tracing::warn!("Telegram could not parse a reply's HTML for chat {}; sent as plain text", chat.0);
                    retry(ctx, chat.0, deadline, || send(true)).await
                }
                other => other,
            }
        }
        Step::Edit { chat, message, html, keyboard } => {
            let edit = || {
                api.edit_message_text(chat, message, html.clone())
                    .parse_mode(ParseMode::Html)
                    .reply_markup(keyboard.clone())
            };
            match retry(ctx, chat.0, deadline, edit).await {
                Ok(()) => Ok(()),
                Err(Failure::Refused(RequestError::Api(teloxide::ApiError::MessageNotModified))) => Ok(()),
                Err(Failure::Refused(error)) => {
                    tracing::debug!("editing failed, sending anew: {}", describe(&error));
                    Box::pin(step_once(ctx, Step::Send { chat, html, keyboard: Some(keyboard) }, deadline)).await
                }
                Err(other) => Err(other),
            }
        }
        Step::Ack { id, text } => {
            let acknowledge = || {
                let request = api.answer_callback_query(id.clone());
                match &text {
                    Some(text) => request.text(text.clone()),
                    None => request,
                }
            };
            // A button press expires within seconds: a few quick tries, then never mind.
            let soon = Instant::now() + Duration::from_secs(10);
            match retry(ctx, 0, deadline.min(soon), acknowledge).await {
                Err(Failure::Interrupted) => Err(Failure::Interrupted),
                Err(Failure::Refused(error)) => {
                    tracing::debug!("answering a button press failed: {}", describe(&error));
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }
}

/// What kind of failure a request error is.
enum Class {
    /// Try again after this long (Telegram's `retry_after`), or after backoff.
    Transient(Option<Duration>),
    Entities,
    Permanent,
}

fn classify(error: &RequestError) -> Class {
    use teloxide::ApiError;
    match error {
        RequestError::RetryAfter(seconds) => Class::Transient(Some(seconds.duration())),
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => Class::Transient(None),
        RequestError::Api(ApiError::CantParseEntities(_)) => Class::Entities,
        RequestError::Api(ApiError::Unknown(text)) if server_side(text) => Class::Transient(None),
        RequestError::Api(_) | RequestError::MigrateToChatId(_) => Class::Permanent,
    }
}

/// Error descriptions of a Bot API that is overloaded or behind a failing proxy.
fn server_side(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["internal server error", "bad gateway", "service unavailable", "gateway timeout", "too many requests"]
        .iter()
        .any(|phrase| text.contains(phrase))
}

/// A short description: the raw body of an unparsable answer (an HTML error
/// page) is left out.
fn describe(error: &RequestError) -> String {
    match error {
        RequestError::InvalidJson { raw, .. } => format!("an answer that is not JSON ({} bytes)", raw.len()),
        other => other.to_string(),
    }
}

/// Sends a request until it goes through, waiting out `retry_after` or
/// backing off, until `deadline`.
async fn retry<R, F>(ctx: &Ctx, chat: i64, deadline: Instant, make: F) -> Result<(), Failure>
where
    F: Fn() -> R,
    R: Request<Err = RequestError>,
{
    let mut attempt = 0u32;
    loop {
        if ctx.stopping() {
            return Err(Failure::Interrupted);
        }
        if chat != 0 && ctx.unless_stopped(ctx.shared.limiter.acquire(chat)).await.is_none() {
            return Err(Failure::Interrupted);
        }
        let error = match make().send().await {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let wait = match classify(&error) {
            Class::Transient(wait) => wait.unwrap_or_else(|| backoff(attempt)),
            Class::Entities => return Err(Failure::PlainText),
            Class::Permanent => return Err(Failure::Refused(error)),
        };
        attempt += 1;
        if Instant::now() + wait > deadline {
            return Err(Failure::GaveUp);
        }
        if attempt == 1 {
            tracing::info!("sending to chat {chat} failed ({}); retrying", describe(&error));
        } else {
            tracing::debug!("sending to chat {chat} failed again ({}); retry {attempt}", describe(&error));
        }
        if ctx.unless_stopped(tokio::time::sleep(wait)).await.is_none() {
            return Err(Failure::Interrupted);
        }
    }
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

/// Our HTML as plain text: tags dropped, the five escapes undone.
fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for character in html.chars() {
        match character {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            _ => out.push(character),
        }
    }
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_keeps_the_words_and_undoes_escapes() {
        assert_eq!(strip_html("<b>Tom &amp; Jerry</b>\n\n<i>a &lt;note&gt;</i>"), "Tom & Jerry\n\na <note>");
    }
}
