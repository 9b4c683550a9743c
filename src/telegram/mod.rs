//! The Telegram bot: the only module that imports teloxide. It receives
//! updates (long polling, or a webhook behind a reverse proxy), decides once
//! per update what it is (command, question, button, other), and sends the
//! responder's reply rendered as HTML. It holds no answering logic of its own.

mod flood;
mod handlers;
mod limits;
pub mod render;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use teloxide::adaptors::CacheMe;
use teloxide::dispatching::Dispatcher;
use teloxide::error_handlers::ErrorHandler;
use teloxide::prelude::*;
use teloxide::types::{BotCommand, BotCommandScope, ChatId, Recipient};
use teloxide::update_listeners::{Polling, webhooks};

use crate::admin::Reloader;
use crate::engine::Engine;
use crate::store::Store;

/// The bot as the handlers see it, with `getMe` cached: the dispatcher calls
/// `getMe` again when it starts and panics if that fails; the cache answers
/// it from our own retried call. Sending goes through `Shared::limiter`.
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
    /// How long one `getUpdates` long poll may wait. Shutdown can take this long.
    pub poll_timeout: Duration,
    /// Telegram user ids allowed to use `/reload`, `/stats` and `/unanswered`.
    pub admins: Vec<u64>,
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
        }
    }
}

/// State the handlers share.
pub(crate) struct Shared {
    pub engine: Arc<ArcSwap<Engine>>,
    pub reloader: Arc<Reloader>,
    /// Where feedback, reply counts and unanswered questions go, if anywhere.
    pub store: Option<Store>,
    pub admins: HashSet<u64>,
    /// The bot's username, for mentions and `/cmd@bot` in groups.
    pub username: String,
    pub flood: Mutex<flood::FloodGuard>,
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

/// Runs the bot until `shutdown` resolves, then finishes the replies in
/// flight and returns. Fails only if the bot cannot start (bad URL, the API
/// refusing `getMe` for good, the webhook address in use).
pub async fn serve(
    reloader: Arc<Reloader>,
    store: Option<Store>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
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
        limiter,
        started: Instant::now(),
    });
    let mut dispatcher = Dispatcher::builder(api.clone(), handlers::schema())
        .dependencies(dptree::deps![shared])
        .default_handler(|_| async {})
        .error_handler(Arc::new(LogErrors("an update handler failed")))
        .build();

    let token = dispatcher.shutdown_token();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing replies in flight");
        // The dispatcher may not have started yet; keep asking briefly.
        for _ in 0..50 {
            match token.shutdown() {
                Ok(done) => {
                    done.await;
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });

    match &options.webhook {
        None => {
            let listener = Polling::builder(api.clone())
                .timeout(options.poll_timeout)
                .backoff_strategy(backoff)
                .delete_webhook()
                .await
                .build();
            dispatcher.dispatch_with_listener(listener, Arc::new(LogErrors("getting updates failed"))).await;
        }
        Some(webhook) => {
            let url = url::Url::parse(&webhook.url)
                .with_context(|| format!("--webhook-url is not a URL: {:?}", webhook.url))?;
            // teloxide binds in a background task and panics there on failure:
            // check the address first so the error reaches the admin.
            drop(
                tokio::net::TcpListener::bind(webhook.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", webhook.listen))?,
            );
            let listener = webhooks::axum(api.clone(), webhooks::Options::new(webhook.listen, url))
                .await
                .context("setting the webhook")?;
            dispatcher.dispatch_with_listener(listener, Arc::new(LogErrors("the webhook failed"))).await;
        }
    }
    tracing::info!("stopped");
    Ok(())
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

/// Logs errors and carries on. teloxide already removes the token from the
/// URLs in its network errors.
struct LogErrors(&'static str);

impl<E: std::fmt::Display + Send + Sync + 'static> ErrorHandler<E> for LogErrors {
    fn handle_error(self: Arc<Self>, error: E) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        tracing::warn!("{}: {error}", self.0);
        Box::pin(async {})
    }
}
