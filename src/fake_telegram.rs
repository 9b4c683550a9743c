//! A fake Telegram Bot API on 127.0.0.1, for the end-to-end tests and the load
//! benchmark: the bot under test talks to it through `TELOXIDE_API_URL`.
//!
//! It queues updates for `getUpdates` (long polling included), records every
//! other call, answers `getMe` with every field teloxide needs, and can be told
//! to answer the next calls of a method with a 429 `retry_after`. It never
//! answers 5xx (teloxide would sleep 10 s). It listens on loopback only and
//! sends nothing anywhere. Not used by the bot itself.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The fake bot's user id and username.
pub const BOT_ID: i64 = 777_000;
pub const BOT_USERNAME: &str = "faqbot_test_bot";

/// One recorded call to the fake.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub params: Value,
    /// The token in the URL path, to check the bot used the right one.
    pub token: String,
}

impl Call {
    pub fn chat_id(&self) -> Option<i64> {
        self.params.get("chat_id").and_then(Value::as_i64)
    }

    pub fn text(&self) -> &str {
        self.params.get("text").and_then(Value::as_str).unwrap_or_default()
    }

    /// The callback data of every inline button, in order.
    pub fn buttons(&self) -> Vec<(String, String)> {
        let rows = self.params.pointer("/reply_markup/inline_keyboard").and_then(Value::as_array);
        rows.into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .map(|button| {
                let text = button.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
                let data = button.get("callback_data").and_then(Value::as_str).unwrap_or_default().to_owned();
                (text, data)
            })
            .collect()
    }
}

#[derive(Default)]
struct Inner {
    updates: VecDeque<Value>,
    next_update_id: i64,
    next_message_id: i64,
    calls: Vec<Call>,
    /// How many calls of each method, kept so that waiting needs no copy of `calls`.
    counts: HashMap<String, usize>,
    /// Method name → how many more calls get a 429, and its retry_after.
    rate_limited: HashMap<String, (u32, u32)>,
    /// While set, every call is refused at the connection level (the API is "lost").
    offline: bool,
}

/// Shared state of a running fake.
#[derive(Clone)]
pub struct FakeTelegram {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    pub address: SocketAddr,
}

impl FakeTelegram {
    /// Starts the fake on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let fake = Self {
            inner: Arc::new(Mutex::new(Inner { next_update_id: 1, next_message_id: 1, ..Inner::default() })),
            changed: Arc::new(Notify::new()),
            address,
        };
        let app = Router::new().route("/{bot}/{method}", post(handle)).with_state(fake.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!("fake Telegram API stopped: {error}");
            }
        });
        Ok(fake)
    }

    /// The base URL to give the bot as `TELOXIDE_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide every other failure behind poisoning.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one update (its `update_id` is filled in) and returns that id.
    pub fn push(&self, mut update: Value) -> i64 {
        let id = {
            let mut inner = self.lock();
            let id = inner.next_update_id;
            inner.next_update_id += 1;
            update["update_id"] = json!(id);
            inner.updates.push_back(update);
            id
        };
        self.changed.notify_waiters();
        id
    }

    /// Queues a text message from `user` in a private chat with them.
    pub fn push_text(&self, user: i64, text: &str) -> i64 {
        let message = self.message(private_chat(user), user, json!({ "text": text }));
        self.push(json!({ "message": message }))
    }

    /// Builds a message object in `chat` from `user` with `content` merged in.
    pub fn message(&self, chat: Value, user: i64, content: Value) -> Value {
        let message_id = {
            let mut inner = self.lock();
            inner.next_message_id += 1;
            inner.next_message_id
        };
        let mut message = json!({
            "message_id": message_id,
            "date": 1_763_700_000,
            "chat": chat,
            "from": { "id": user, "is_bot": false, "first_name": "Test", "language_code": "en" },
        });
        if let (Some(message), Some(content)) = (message.as_object_mut(), content.as_object()) {
            for (key, value) in content {
                message.insert(key.clone(), value.clone());
            }
        }
        message
    }

    /// Queues a button press by `user` on `message` (a message the bot sent).
    pub fn push_callback(&self, user: i64, message: &Value, data: &str) -> i64 {
        let id = format!("cb{}", self.lock().next_update_id);
        self.push(json!({ "callback_query": {
            "id": id,
            "from": { "id": user, "is_bot": false, "first_name": "Test" },
            "chat_instance": "instance",
            "data": data,
            "message": message,
        }}))
    }

    /// The next `count` calls of `method` get a 429 with `retry_after` seconds.
    pub fn rate_limit(&self, method: &str, count: u32, retry_after: u32) {
        self.lock().rate_limited.insert(method.to_owned(), (count, retry_after));
    }

    /// While offline, every call fails as if the API were unreachable.
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
        self.changed.notify_waiters();
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls of one method so far.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.lock().calls.iter().filter(|call| call.method == method).cloned().collect()
    }

    /// Waits until `ready` holds for the calls so far, or `timeout` passes;
    /// returns the calls either way.
    pub async fn wait_for(&self, timeout: Duration, ready: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let calls = self.calls();
            if ready(&calls) || Instant::now() >= deadline {
                return calls;
            }
            let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), notified).await;
        }
    }

    /// Waits until at least `count` calls of `method` were made.
    pub async fn wait_for_calls(&self, method: &str, count: usize, timeout: Duration) -> Vec<Call> {
        self.wait_for(timeout, |calls| calls.iter().filter(|call| call.method == method).count() >= count).await;
        self.calls_of(method)
    }

    /// How many calls of `method` so far.
    pub fn count(&self, method: &str) -> usize {
        self.lock().counts.get(method).copied().unwrap_or(0)
    }

    /// Waits until `method` was called `count` times or `timeout` passes, and
    /// returns how many calls there were: cheap enough for load tests.
    pub async fn wait_for_count(&self, method: &str, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let now = self.count(method);
            if now >= count || Instant::now() >= deadline {
                return now;
            }
            let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), notified).await;
        }
    }
}

/// The text fields of a multipart form (teloxide sends `setWebhook` so).
fn form_fields(body: &str) -> Value {
    let mut fields = serde_json::Map::new();
    for part in body.split("Content-Disposition: form-data; name=\"").skip(1) {
        let Some((name, rest)) = part.split_once('"') else { continue };
        let Some((_, value)) = rest.split_once("\r\n\r\n") else { continue };
        let value = value.split("\r\n--").next().unwrap_or_default();
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        fields.insert(name.to_owned(), value);
    }
    Value::Object(fields)
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|first| first.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// A private chat with `user`.
pub fn private_chat(user: i64) -> Value {
    json!({ "id": user, "type": "private", "first_name": "Test" })
}

/// A supergroup chat.
pub fn group_chat(id: i64) -> Value {
    json!({ "id": id, "type": "supergroup", "title": "Test group" })
}

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

async fn handle(
    State(fake): State<FakeTelegram>,
    Path((bot, method)): Path<(String, String)>,
    body: String,
) -> Response {
    let params: Value = serde_json::from_str(&body).unwrap_or_else(|_| form_fields(&body));
    let token = bot.strip_prefix("bot").unwrap_or(&bot).to_owned();
    // Telegram matches method names case-insensitively; teloxide sends "GetMe".
    let method = lower_first(&method);
    if fake.lock().offline {
        // Never a 5xx (teloxide would sleep 10 s): a failed request it reports
        // at once and backs off from, as when the network is down.
        return (axum::http::StatusCode::NOT_FOUND, "offline").into_response();
    }
    if method != "getUpdates" {
        let limited = {
            let mut inner = fake.lock();
            match inner.rate_limited.get_mut(&method) {
                Some((count, retry_after)) if *count > 0 => {
                    *count -= 1;
                    Some(*retry_after)
                }
                _ => None,
            }
        };
        {
            let mut inner = fake.lock();
            *inner.counts.entry(method.clone()).or_default() += 1;
            inner.calls.push(Call { method: method.clone(), params: params.clone(), token });
        }
        fake.changed.notify_waiters();
        if let Some(retry_after) = limited {
            let description = format!("Too Many Requests: retry after {retry_after}");
            let body = json!({ "ok": false, "error_code": 429, "description": description, "parameters": { "retry_after": retry_after } });
            return (axum::http::StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        }
    }
    match method.as_str() {
        "getMe" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "FAQ bot", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })),
        "getUpdates" => get_updates(&fake, &params).await,
        "sendMessage" | "editMessageText" => {
            let chat_id = params.get("chat_id").cloned().unwrap_or(json!(0));
            let message_id = match params.get("message_id").and_then(Value::as_i64) {
                Some(id) => id,
                None => {
                    let mut inner = fake.lock();
                    inner.next_message_id += 1;
                    inner.next_message_id
                }
            };
            let chat = match chat_id.as_i64() {
                Some(id) if id < 0 => group_chat(id),
                Some(id) => private_chat(id),
                None => private_chat(0),
            };
            ok(json!({
                "message_id": message_id,
                "date": 1_763_700_001,
                "chat": chat,
                "from": { "id": BOT_ID, "is_bot": true, "first_name": "FAQ bot", "username": BOT_USERNAME },
                "text": params.get("text").cloned().unwrap_or(json!("")),
            }))
        }
        "getWebhookInfo" => ok(json!({ "url": "", "has_custom_certificate": false, "pending_update_count": 0 })),
        _ => ok(json!(true)),
    }
}

/// Long polling: confirm updates below `offset`, then return what is queued
/// or wait for it up to `timeout` seconds.
async fn get_updates(fake: &FakeTelegram, params: &Value) -> Response {
    let offset = params.get("offset").and_then(Value::as_i64).unwrap_or(0);
    let limit = params.get("limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let timeout = params.get("timeout").and_then(Value::as_u64).unwrap_or(0).min(30);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = fake.changed.notified();
        let batch: Vec<Value> = {
            let mut inner = fake.lock();
            while inner.updates.front().and_then(|u| u["update_id"].as_i64()).is_some_and(|id| id < offset) {
                inner.updates.pop_front();
            }
            inner.updates.iter().take(limit).cloned().collect()
        };
        if !batch.is_empty() || Instant::now() >= deadline || fake.lock().offline {
            fake.changed.notify_waiters();
            return ok(Value::Array(batch));
        }
        let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), notified).await;
    }
}
