//! The test harness shared by the Telegram and admin tests: the bot running
//! in-process against the fake Bot API, and the built binary (always with a
//! temporary data directory: tests never write outside one).
#![allow(dead_code)] // each test crate uses a part of it

pub mod fake_telegram;

pub mod bin;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use fake_telegram::{BOT_USERNAME, Call, FakeTelegram, private_chat};
use faqbot::admin::Reloader;
use faqbot::engine::Engine;
use faqbot::store::Store;
use faqbot::telegram::{self, Options};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const WAIT: Duration = Duration::from_secs(15);
pub const TOKEN: &str = "123456:TEST-TOKEN";

pub struct Bot {
    pub fake: FakeTelegram,
    /// The bot's store (in memory unless the test gave one): its inbox tells
    /// when every reply is out.
    pub store: Store,
    pub engine: Arc<Engine>,
    pub reloader: Arc<Reloader>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Bot {
    pub async fn start(knowledge: &Path, tweak: impl FnOnce(&mut Options)) -> Bot {
        Bot::start_with_store(knowledge, None, tweak).await
    }

    pub async fn start_with_store(knowledge: &Path, store: Option<Store>, tweak: impl FnOnce(&mut Options)) -> Bot {
        let fake = FakeTelegram::start().await.expect("fake API");
        let store = match store {
            Some(store) => store,
            None => Store::in_memory(faqbot::store::Options::default()).expect("in-memory store"),
        };
        let engine = Arc::new(Engine::load(knowledge).expect("knowledge"));
        let mut options = Options::new(TOKEN.to_owned());
        options.api_url = Some(fake.url());
        options.poll_timeout = Duration::from_secs(1);
        tweak(&mut options);
        let (stop, stopped) = oneshot::channel::<()>();
        let cell = Arc::new(ArcSwap::new(engine.clone()));
        let reloader = Arc::new(Reloader::new(knowledge.to_path_buf(), cell));
        let task = tokio::spawn(telegram::serve(reloader.clone(), Some(store.clone()), options, async move {
            let _ = stopped.await;
        }));
        // Started once the command menu is registered.
        fake.wait_for_calls("setMyCommands", 1, WAIT).await;
        Bot { fake, store, engine, reloader, stop: Some(stop), task }
    }

    pub async fn shipped() -> Bot {
        Bot::start(Path::new("knowledge"), |_| {}).await
    }

    /// Waits for `count` messages sent to `chat` and returns them all.
    pub async fn sent_to(&self, chat: i64, count: usize) -> Vec<Call> {
        let calls = self
            .fake
            .wait_for(WAIT, |calls| {
                calls.iter().filter(|c| c.method == "sendMessage" && c.chat_id() == Some(chat)).count() >= count
            })
            .await;
        calls.into_iter().filter(|c| c.method == "sendMessage" && c.chat_id() == Some(chat)).collect()
    }

    /// Waits until nothing is waiting in the inbox (every reply is out,
    /// given up or dropped): after it, no more messages will come.
    pub async fn idle(&self) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let pending = self.store.delivery(std::time::SystemTime::now()).map(|d| d.pending).unwrap_or(-1);
            // Updates still at the fake have not reached the inbox yet.
            if pending == 0 && self.fake.unconfirmed() == 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the inbox never emptied ({pending} waiting)");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stopped = tokio::time::timeout(WAIT, self.task).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "the bot did not stop cleanly: {stopped:?}");
    }

    pub fn note(&self) -> String {
        format!("<i>{}</i>", teloxide_escape(&self.engine.kb.messages.clinician_note))
    }
}

pub fn teloxide_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The message a sent call became, as the fake returned it, for pressing its buttons.
pub fn as_message(call: &Call, message_id: i64) -> Value {
    json!({
        "message_id": message_id,
        "date": 1_763_700_001,
        "chat": private_chat(call.chat_id().unwrap_or(0)),
        "from": { "id": fake_telegram::BOT_ID, "is_bot": true, "first_name": "FAQ bot", "username": BOT_USERNAME },
        "text": call.text(),
    })
}

/// Starts `faqbot serve` with its database in `data` and its logs piped.
pub fn spawn_serve(api_url: &str, token: &str, data: &Path) -> std::process::Child {
    bin::faqbot()
        .arg("serve")
        .env("TELOXIDE_TOKEN", token)
        .env("TELOXIDE_API_URL", api_url)
        .env("FAQBOT_DATA", data)
        .env("RUST_LOG", "debug")
        .env_remove("FAQBOT_KNOWLEDGE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start faqbot serve")
}

pub fn terminate(child: &std::process::Child) {
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

/// The standard error of a child process, collected line by line by a thread,
/// so a test can wait for a line instead of sleeping.
#[derive(Clone, Default)]
pub struct Logs(Arc<std::sync::Mutex<String>>);

impl Logs {
    pub fn collect(child: &mut std::process::Child) -> Logs {
        let logs = Logs::default();
        if let Some(stderr) = child.stderr.take() {
            let sink = logs.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut text = sink.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        logs
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Waits until the logs contain `needle` (true), or `timeout` passes.
    pub async fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.text().contains(needle)
    }
}

/// Waits for a child process to exit (on a blocking thread), for at most `timeout`.
pub async fn wait_exit(
    child: std::process::Child,
    timeout: Duration,
) -> (std::process::Child, Option<std::process::ExitStatus>) {
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + timeout;
        let mut child = child;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return (child, Some(status)),
                Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => return (child, None),
            }
        }
    });
    waited.await.expect("join")
}
