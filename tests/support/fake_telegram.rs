//! A fake Telegram Bot API on 127.0.0.1, for the end-to-end tests and the
//! benchmarks (`benches/bot.rs` includes this file): the bot under test talks
//! to it through `TELOXIDE_API_URL`. Test code only; never shipped.
//!
//! It queues updates for `getUpdates` (long polling included, confirming by
//! offset as Telegram does), records every other call, and answers `getMe`
//! with every field teloxide needs. Faults are injected on request only:
//! per method for a count or a time (502 with an HTML body, a body that is not
//! JSON, 429 with `retry_after`, 400 "can't parse entities", 403 blocked), and
//! connections reset for a time. Without a fault it never answers 5xx
//! (teloxide sleeps 10 s after one). It listens on loopback only and sends
//! nothing anywhere.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
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
    /// Whether the fake accepted it (no fault was injected).
    pub ok: bool,
}

/// A fault the fake can answer with instead of the real answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 502 with an HTML page, as a proxy in front of the API sends.
    BadGateway,
    /// 200 with a body that is not JSON.
    NotJson,
    /// 429 with `retry_after` seconds.
    TooManyRequests(u32),
    /// 400 "can't parse entities", for requests with a parse mode only.
    CantParseEntities,
    /// 403: the user blocked the bot.
    Blocked,
}

/// When a fault applies.
#[derive(Debug, Clone, Copy)]
enum Span {
    Count(u32),
    Until(Instant),
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
    /// Method name → the fault its calls get, and for how long.
    faults: HashMap<String, (Fault, Span)>,
    /// New connections are dropped unanswered until then.
    reset_until: Option<Instant>,
    /// While set, every call is refused at the connection level (the API is "lost").
    offline: bool,
    /// Calls refused while offline.
    offline_refusals: usize,
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
        let listener = Resetting { listener, fake: fake.clone() };
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
        self.fail_next(method, Fault::TooManyRequests(retry_after), count);
    }

    /// The next `count` calls of `method` get `fault`.
    pub fn fail_next(&self, method: &str, fault: Fault, count: u32) {
        self.lock().faults.insert(method.to_owned(), (fault, Span::Count(count)));
    }

    /// Every call of `method` gets `fault` for `duration` from now.
    pub fn fail_for(&self, method: &str, fault: Fault, duration: Duration) {
        self.lock().faults.insert(method.to_owned(), (fault, Span::Until(Instant::now() + duration)));
    }

    /// New connections are dropped unanswered for `duration` from now (and
    /// answers meanwhile close theirs, so the client has to reconnect).
    pub fn reset_connections_for(&self, duration: Duration) {
        self.lock().reset_until = Some(Instant::now() + duration);
    }

    fn resetting(&self) -> bool {
        self.lock().reset_until.is_some_and(|until| Instant::now() < until)
    }

    /// Successful calls of `method` to `chat`.
    pub fn delivered_to(&self, method: &str, chat: i64) -> Vec<Call> {
        self.lock().calls.iter().filter(|c| c.ok && c.method == method && c.chat_id() == Some(chat)).cloned().collect()
    }

    /// How many successful calls of `method` so far.
    pub fn delivered(&self, method: &str) -> usize {
        self.lock().calls.iter().filter(|c| c.ok && c.method == method).count()
    }

    /// Waits until `ready` holds for the successful calls of `method`, or `timeout` passes.
    pub async fn wait_delivered(&self, method: &str, timeout: Duration, ready: impl Fn(&[Call]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let calls: Vec<Call> = self.lock().calls.iter().filter(|c| c.ok && c.method == method).cloned().collect();
            if ready(&calls) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200).min(deadline - Instant::now()), notified).await;
        }
    }

    /// Updates queued and not yet confirmed by an offset.
    pub fn unconfirmed(&self) -> usize {
        self.lock().updates.len()
    }

    /// While offline, every call fails as if the API were unreachable.
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
        self.changed.notify_waiters();
    }

    /// Calls refused while offline so far.
    pub fn offline_refusals(&self) -> usize {
        self.lock().offline_refusals
    }

    /// Waits until at least `count` calls were refused while offline.
    pub async fn wait_offline_refusals(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.offline_refusals() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        fake.lock().offline_refusals += 1;
        fake.changed.notify_waiters();
        // Never a 5xx (teloxide would sleep 10 s): a failed request it reports
        // at once and backs off from, as when the network is down.
        return (StatusCode::NOT_FOUND, "offline").into_response();
    }
    let fault = if method == "getUpdates" { None } else { take_fault(&fake, &method, &params) };
    if method != "getUpdates" {
        {
            let mut inner = fake.lock();
            if fault.is_none() {
                *inner.counts.entry(method.clone()).or_default() += 1;
            }
            inner.calls.push(Call { method: method.clone(), params: params.clone(), token, ok: fault.is_none() });
        }
        fake.changed.notify_waiters();
    }
    let mut response = match fault {
        Some(fault) => fault_response(fault),
        None => answer(&fake, &method, &params).await,
    };
    if fake.resetting() {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Takes one use of the fault set for `method`, if any applies.
fn take_fault(fake: &FakeTelegram, method: &str, params: &Value) -> Option<Fault> {
    let mut inner = fake.lock();
    let (fault, span) = inner.faults.get_mut(method)?;
    let fault = *fault;
    if fault == Fault::CantParseEntities && params.get("parse_mode").is_none() {
        return None;
    }
    match span {
        Span::Count(count) if *count > 0 => {
            *count -= 1;
            Some(fault)
        }
        Span::Until(until) if Instant::now() < *until => Some(fault),
        _ => None,
    }
}

fn fault_response(fault: Fault) -> Response {
    let json = |status: StatusCode, description: &str, extra: Value| {
        let mut body = json!({ "ok": false, "error_code": status.as_u16(), "description": description });
        if !extra.is_null() {
            body["parameters"] = extra;
        }
        (status, axum::Json(body)).into_response()
    };
    match fault {
        Fault::BadGateway => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        )
            .into_response(),
        Fault::NotJson => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "upstream is restarting").into_response(),
        Fault::TooManyRequests(retry_after) => json(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too Many Requests: retry after {retry_after}"),
            json!({ "retry_after": retry_after }),
        ),
        Fault::CantParseEntities => json(
            StatusCode::BAD_REQUEST,
            "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0",
            Value::Null,
        ),
        Fault::Blocked => json(StatusCode::FORBIDDEN, "Forbidden: bot was blocked by the user", Value::Null),
    }
}

async fn answer(fake: &FakeTelegram, method: &str, params: &Value) -> Response {
    match method {
        "getMe" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "FAQ bot", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })),
        "getUpdates" => get_updates(fake, params).await,
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

/// The listener of the fake: drops new connections unanswered while
/// connections are being reset.
struct Resetting {
    listener: tokio::net::TcpListener,
    fake: FakeTelegram,
}

impl axum::serve::Listener for Resetting {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) if !self.fake.resetting() => return (stream, address),
                // Dropped with the request unread: the client sees a reset.
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
