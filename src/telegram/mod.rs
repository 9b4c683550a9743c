//! The Telegram bot: the only module that imports teloxide. It receives
//! updates (its own long-polling loop, or a webhook behind a reverse proxy),
//! keeps each one that needs a reply in the store's inbox *before* telling
//! Telegram it arrived, and answers from the inbox (`deliver`): so a reply is
//! neither lost nor repeated across failures and restarts. It holds no
//! answering logic of its own.

mod deliver;
mod flood;
mod handlers;
mod limits;
mod recent;
pub mod render;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use teloxide::adaptors::CacheMe;
use teloxide::prelude::*;
use teloxide::types::{BotCommand, BotCommandScope, ChatId, Recipient, Update, UpdateKind};
use tokio::sync::{Notify, watch};

use crate::admin::Reloader;
use crate::engine::Engine;
use crate::store::{Incoming, NOTICE_ONLY, Store};

/// The bot as the handlers see it, with `getMe` cached.
pub(crate) type Api = CacheMe<Bot>;

/// How to run the bot.
#[derive(Debug, Clone)]
pub struct Options {
    pub token: String,
    /// The Bot API base URL (`TELOXIDE_API_URL`); Telegram's when `None`.
    pub api_url: Option<String>,
    /// Receive updates by webhook instead of long polling.
    pub webhook: Option<Webhook>,
    /// Respect Telegram's rate limits (off only for load benchmarks).
    pub throttle: bool,
    /// Messages one person may send per minute before the flood guard
    /// answers once and then stays silent until they calm down.
    pub flood_per_minute: usize,
    /// How long one `getUpdates` long poll may wait.
    pub poll_timeout: Duration,
    /// Telegram user ids allowed to use `/reload`, `/stats` and `/unanswered`.
    pub admins: Vec<u64>,
    /// A reply Telegram keeps refusing with transient errors is given up
    /// once its question is this old.
    pub give_up_after: Duration,
    /// Replies being prepared or sent at once (each to a different chat).
    pub workers: usize,
    /// Updates one chat may have waiting; beyond it the oldest are dropped
    /// and the chat gets one notice.
    pub per_chat_backlog: usize,
    /// How long shutdown waits for the sends in flight.
    pub grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    /// The public HTTPS URL Telegram posts updates to (through the proxy).
    pub url: String,
    /// The local address to listen on.
    pub listen: SocketAddr,
}

impl Options {
    pub fn new(token: String) -> Self {
        Self {
            token,
            api_url: None,
            webhook: None,
            throttle: true,
            flood_per_minute: 20,
            poll_timeout: Duration::from_secs(4),
            admins: Vec::new(),
            give_up_after: Duration::from_secs(3600),
            workers: 16,
            per_chat_backlog: 30,
            grace: Duration::from_secs(3),
        }
    }
}

/// State the handlers share.
pub(crate) struct Shared {
    pub engine: Arc<ArcSwap<Engine>>,
    pub reloader: Arc<Reloader>,
    /// The inbox, feedback, reply counts and unanswered questions.
    pub store: Store,
    pub admins: HashSet<u64>,
    /// The bot's username, for mentions and `/cmd@bot` in groups.
    pub username: String,
    pub flood: Mutex<flood::FloodGuard>,
    /// Each conversation's last messages, for the safety screen; memory only.
    pub recent: Mutex<recent::Recent>,
    /// Telegram's sending limits.
    pub limiter: limits::RateLimiter,
    pub started: Instant,
}

/// The public command menu, registered with `setMyCommands` at start.
const PUBLIC_COMMANDS: &[(&str, &str)] = &[
    ("start", "What this bot is and how to use it"),
    ("help", "How to ask and what the commands do"),
    ("topics", "Browse questions by topic"),
    ("sources", "The research behind the answers"),
    ("about", "Version, knowledge base and what is kept"),
    ("ask", "Ask a question (in group chats)"),
];

/// Added to the menu in admins' own chats only.
pub(crate) const ADMIN_COMMANDS: &[(&str, &str)] = &[
    ("reload", "Reload the knowledge base"),
    ("stats", "Usage figures"),
    ("unanswered", "Most frequent unanswered questions [days]"),
];

fn commands(list: &[&[(&str, &str)]]) -> Vec<BotCommand> {
    list.iter()
        .flat_map(|part| part.iter())
        .map(|(command, description)| BotCommand::new(*command, *description))
        .collect()
}

/// Runs the bot until `shutdown` resolves, then stops fetching, lets the
/// sends in flight finish (for at most `Options::grace`) and returns; what is
/// not answered stays in the inbox for the next start. Without a store the
/// inbox lives in memory. Fails only if the bot cannot start (bad URL, the
/// API refusing `getMe` for good, the webhook address in use).
pub async fn serve(
    reloader: Arc<Reloader>,
    store: Option<Store>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = match store {
        Some(store) => store,
        None => Store::in_memory(crate::store::Options::default())?,
    };
    let mut bot = Bot::new(&options.token);
    if let Some(url) = &options.api_url {
        let url = url::Url::parse(url).with_context(|| format!("TELOXIDE_API_URL is not a URL: {url:?}"))?;
        bot = bot.set_api_url(url);
    }
    let api: Api = bot.cache_me();
    let limiter = limits::RateLimiter::new(options.throttle.then(limits::Limits::default));

    let me = get_me(&api).await?;
    let username = me.username().to_owned();
    tracing::info!("serving as @{username}");
    if let Err(error) = api.set_my_commands(commands(&[PUBLIC_COMMANDS])).await {
        tracing::warn!("could not register the command menu: {error}");
    }
    for admin in &options.admins {
        // Only in the admin's own chat; fails harmlessly if they never wrote to the bot.
        let scope = BotCommandScope::Chat { chat_id: Recipient::Id(ChatId(*admin as i64)) };
        if let Err(error) = api.set_my_commands(commands(&[PUBLIC_COMMANDS, ADMIN_COMMANDS])).scope(scope).await {
            tracing::warn!("could not register the admin menu for {admin}: {error}");
        }
    }

    let shared = Arc::new(Shared {
        engine: reloader.engine.clone(),
        reloader,
        store,
        admins: options.admins.iter().copied().collect(),
        username,
        flood: Mutex::new(flood::FloodGuard::new(options.flood_per_minute, Duration::from_secs(60))),
        recent: Mutex::new(recent::Recent::default()),
        limiter,
        started: Instant::now(),
    });
    let (stop, stopping) = watch::channel(false);
    let ctx = Arc::new(deliver::Ctx {
        api: api.clone(),
        shared: shared.clone(),
        wake: Notify::new(),
        stop: stopping,
        workers: options.workers.max(1),
        give_up_after: options.give_up_after,
    });
    let delivery = tokio::spawn(deliver::run(ctx.clone(), options.grace));
    let receiver = Receiver { ctx: ctx.clone(), bot: me.id.0 as i64, per_chat: options.per_chat_backlog };

    let received = match &options.webhook {
        None => {
            receiver.poll(&api, options.poll_timeout, shutdown).await;
            Ok(())
        }
        Some(webhook) => receiver.webhook(&api, webhook, shutdown).await,
    };
    tracing::info!("shutting down: no more updates fetched; finishing the sends in flight");
    let _ = stop.send(true);
    if let Err(error) = delivery.await {
        tracing::error!("the delivery task failed: {error}");
    }
    tracing::info!("stopped");
    received
}

/// Takes updates in: decides which need a reply and keeps those in the inbox.
struct Receiver {
    ctx: Arc<deliver::Ctx>,
    /// The bot's own id: the stored polling offset is per bot.
    bot: i64,
    per_chat: usize,
}

impl Receiver {
    /// Keeps the updates that need a reply, and the offset after them, in
    /// one transaction; wakes the workers. An error means nothing was kept.
    async fn keep(&self, updates: Vec<(Update, Option<String>)>, next_offset: Option<i64>) -> anyhow::Result<()> {
        let shared = self.ctx.shared.clone();
        let (bot, per_chat) = (self.bot, self.per_chat);
        let added = tokio::task::spawn_blocking(move || {
            let incoming: Vec<Incoming> =
                updates.iter().filter_map(|(update, raw)| incoming(&shared, update, raw.as_deref())).collect();
            shared.store.inbox_add(&incoming, bot, next_offset, per_chat)
        })
        .await
        .context("keeping updates")??;
        if added > 0 {
            self.ctx.wake.notify_one();
        }
        Ok(())
    }

    /// Long polling: each batch is kept before the next call confirms it.
    async fn poll(&self, api: &Api, timeout: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        if let Err(error) = api.delete_webhook().await {
            tracing::warn!("could not remove a webhook before polling: {error}");
        }
        let store = self.ctx.shared.store.clone();
        let bot = self.bot;
        let mut offset = match tokio::task::spawn_blocking(move || store.inbox_offset(bot)).await {
            Ok(Ok(offset)) => offset,
            Ok(Err(error)) => {
                tracing::error!("{error:#}");
                None
            }
            Err(_) => None,
        };
        let mut failures = 0u32;
        loop {
            let fetched = tokio::select! {
                _ = &mut shutdown => return,
                fetched = fetch(api, offset, timeout) => fetched,
            };
            let pause = match fetched {
                Ok((_, None)) => None,
                Ok((batch, next)) => match self.keep(batch, next).await {
                    Ok(()) => {
                        offset = next.or(offset);
                        None
                    }
                    Err(error) => {
                        // Not confirmed: Telegram sends them again.
                        tracing::error!("could not keep updates, fetching them again: {error:#}");
                        Some(backoff(failures))
                    }
                },
                Err(error) => {
                    tracing::warn!("getting updates failed: {error:#}");
                    Some(backoff(failures))
                }
            };
            match pause {
                None => failures = 0,
                Some(pause) => {
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Webhook: an update is kept before Telegram gets its 200; if keeping
    /// fails Telegram gets a 500 and sends it again.
    async fn webhook(
        self,
        api: &Api,
        webhook: &Webhook,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        use axum::http::{HeaderMap, StatusCode};
        let url =
            url::Url::parse(&webhook.url).with_context(|| format!("--webhook-url is not a URL: {:?}", webhook.url))?;
        let path = url.path().to_owned();
        let listener = tokio::net::TcpListener::bind(webhook.listen)
            .await
            .with_context(|| format!("cannot listen on {}", webhook.listen))?;
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret)
            .map_err(|error| anyhow::anyhow!("no system randomness for the secret: {error}"))?;
        let secret: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
        api.set_webhook(url.clone()).secret_token(secret.clone()).await.context("setting the webhook")?;
        tracing::info!("webhook: listening on {} at path {path} (public URL {url})", webhook.listen);

        let receiver = Arc::new(self);
        let secret = Arc::new(secret);
        let hook = move |headers: HeaderMap, body: String| {
            let (receiver, secret) = (receiver.clone(), secret.clone());
            async move {
                let given = headers.get("X-Telegram-Bot-Api-Secret-Token").and_then(|value| value.to_str().ok());
                if given != Some(secret.as_str()) {
                    return StatusCode::UNAUTHORIZED;
                }
                let update = match serde_json::from_str::<Update>(&body) {
                    Ok(update) => update,
                    Err(error) => {
                        // Logged without the body: it holds what a user wrote.
                        tracing::warn!("an update that cannot be read ({} bytes) was ignored: {error}", body.len());
                        return StatusCode::OK;
                    }
                };
                match receiver.keep(vec![(update, Some(body))], None).await {
                    Ok(()) => StatusCode::OK,
                    Err(error) => {
                        tracing::error!("could not keep an update; Telegram will send it again: {error:#}");
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                }
            }
        };
        let app = axum::Router::new().route(&path, axum::routing::post(hook));
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("the webhook server failed")?;
        Ok(())
    }
}

/// One long poll: the updates with their JSON as received (stored as is: a
/// teloxide `Update` does not always serialise back to what it was read
/// from), and the offset that confirms them all, unreadable ones included.
async fn fetch(
    api: &Api,
    offset: Option<i64>,
    timeout: Duration,
) -> anyhow::Result<(Vec<(Update, Option<String>)>, Option<i64>)> {
    let bot = api.inner();
    let mut url = bot.api_url();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("the Bot API URL cannot take a path"))?
        .push(&format!("bot{}", bot.token()))
        .push("getUpdates");
    let mut body = serde_json::json!({ "timeout": timeout.as_secs() });
    if let Some(offset) = offset {
        body["offset"] = serde_json::json!(offset);
    }
    // The URL holds the token: errors are reported without it.
    let response = bot
        .client()
        .post(url)
        .json(&body)
        .timeout(timeout + Duration::from_secs(10))
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{}", error.without_url()))?;
    let status = response.status();
    let text = response.text().await.map_err(|error| anyhow::anyhow!("{}", error.without_url()))?;
    let answer: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
        anyhow::anyhow!("the Bot API answered {status} with a body that is not JSON ({} bytes)", text.len())
    })?;
    let Some(results) = answer.get("result").and_then(serde_json::Value::as_array).filter(|_| status.is_success())
    else {
        let description = answer.get("description").and_then(serde_json::Value::as_str).unwrap_or("no description");
        bail!("the Bot API answered {status}: {description}");
    };
    let mut next = None;
    let mut updates = Vec::new();
    for raw in results {
        let id = raw.get("update_id").and_then(serde_json::Value::as_i64);
        if let Some(id) = id {
            next = next.max(Some(id + 1));
        }
        // Read from text: teloxide's reader does not accept every update from a `Value`.
        let text = raw.to_string();
        match serde_json::from_str::<Update>(&text) {
            Ok(update) => updates.push((update, Some(text))),
            Err(error) => {
                // Named by its fields only: the values hold what a user wrote.
                let fields: Vec<&str> =
                    raw.as_object().map(|object| object.keys().map(String::as_str).collect()).unwrap_or_default();
                tracing::warn!(
                    "update {} cannot be read (fields: {}; {}); skipped",
                    id.unwrap_or(-1),
                    fields.join(", "),
                    json_error_kind(&error)
                );
            }
        }
    }
    Ok((updates, next))
}

/// What kind of JSON error, without the message (it can quote the input).
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// The inbox row for an update that needs a reply; `None` for the rest. The
/// flood guard counts messages here, on arrival, so a flood never becomes a
/// backlog.
fn incoming(shared: &Shared, update: &Update, raw: Option<&str>) -> Option<Incoming> {
    if let UpdateKind::Error(value) = &update.kind {
        // Named by its kind only: the value holds what a user wrote.
        let kinds: Vec<&str> =
            value.as_object().map(|object| object.keys().map(String::as_str).collect()).unwrap_or_default();
        tracing::warn!("update {} cannot be read (fields: {}); skipped", update.id.0, kinds.join(", "));
        return None;
    }
    let (lane, user) = match handlers::triage(update, &shared.username) {
        handlers::Triage::Ignore => return None,
        handlers::Triage::Message { chat, user } => (chat, Some(user)),
        handlers::Triage::Button { chat } => (chat, None),
    };
    let verdict = user.map_or(flood::Verdict::Allow, |user| {
        let mut guard = shared.flood.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.check(user, Instant::now())
    });
    let body = match raw {
        Some(raw) => raw.to_owned(),
        None => match serde_json::to_string(update) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!("update {} cannot be stored ({error}); skipped", update.id.0);
                return None;
            }
        },
    };
    Some(Incoming {
        update_id: i64::from(update.id.0),
        lane,
        body,
        flags: if verdict == flood::Verdict::Notice { NOTICE_ONLY } else { 0 },
        dropped: verdict == flood::Verdict::Silent,
    })
}

/// `getMe`, retried a few times: the API may be briefly unreachable at start.
async fn get_me(api: &Api) -> anyhow::Result<teloxide::types::Me> {
    let mut last = None;
    for attempt in 0..5u32 {
        match api.get_me().await {
            Ok(me) => return Ok(me),
            Err(teloxide::RequestError::Api(error)) => bail!("Telegram refused the token: {error}"),
            Err(error) => {
                tracing::warn!("getMe failed (attempt {}): {error}", attempt + 1);
                last = Some(error);
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
    match last {
        Some(error) => Err(error).context("cannot reach the Telegram Bot API"),
        None => bail!("cannot reach the Telegram Bot API"),
    }
}

/// Exponential backoff between reconnections, from 0.5 s up to 30 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1u64 << attempt.min(6))).min(Duration::from_secs(30))
}
