//! Load benchmarks of the Telegram bot against the fake Bot API on 127.0.0.1
//! (the tests' fake, included from `tests/support`). Run with
//!
//!     cargo bench --bench bot                 # all three
//!     cargo bench --bench bot -- throughput   # or burst, backlog
//!
//! - `throughput`: 500 users send 10,000 questions at once to the bot in this
//!   process with throttling off: updates per second end to end, replies lost
//!   and repeated.
//! - `burst`: with Telegram's limits on, one user sends 90 messages at once
//!   and ten others one each: how long the ten wait (median of 5 runs).
//! - `backlog`: the built `faqbot serve` gets 50 questions a second from new
//!   users for 2 minutes, above Telegram's 30 a second, so a backlog forms:
//!   its peak RSS, how much waits in the inbox, and whether the backlog is
//!   served oldest first. Bounded in count and time; stops by itself.
//!
//! With `FAQBOT_MODEL` set to the model's directory, the in-process bot
//! answers with the model (a forward pass per question), as `serve` does;
//! without it, words only.

#[path = "../tests/support/fake_telegram.rs"]
#[allow(dead_code)]
mod fake_telegram;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fake_telegram::FakeTelegram;

fn main() -> anyhow::Result<()> {
    // As the shipped binary does (src/main.rs), so that the bot measured here
    // runs the model as it does in production.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let wanted: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|arg| arg == name);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("runtime")?;
    if runs("throughput") {
        println!("{}", runtime.block_on(throughput(500, 10_000))?);
    }
    if runs("burst") {
        println!("{}", runtime.block_on(burst(5))?);
    }
    if runs("backlog") {
        println!("{}", runtime.block_on(backlog(50, Duration::from_secs(120)))?);
    }
    Ok(())
}

/// Starts the bot in this process; returns the fake and a stop handle.
async fn in_process(
    tweak: impl FnOnce(&mut faqbot::telegram::Options),
) -> anyhow::Result<(FakeTelegram, tokio::sync::oneshot::Sender<()>)> {
    let fake = FakeTelegram::start().await.context("starting the fake Bot API")?;
    let mut options = faqbot::telegram::Options::new("1:load-test".to_owned());
    options.api_url = Some(fake.url());
    options.poll_timeout = Duration::from_secs(1);
    tweak(&mut options);
    let engine = faqbot::engine::Engine::load_with(Path::new("knowledge"), model()?)?;
    let engine = Arc::new(arc_swap::ArcSwap::from_pointee(engine));
    let reloader = Arc::new(faqbot::admin::Reloader::new("knowledge".into(), engine));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(faqbot::telegram::serve(reloader, None, options, async move {
        let _ = stopped.await;
    }));
    if fake.wait_for_count("setMyCommands", 1, Duration::from_secs(30)).await == 0 {
        bail!("the bot did not start");
    }
    Ok((fake, stop))
}

/// The model from `FAQBOT_MODEL`, with its vectors cached in memory only.
fn model() -> anyhow::Result<Option<faqbot::model::Semantic>> {
    match std::env::var_os("FAQBOT_MODEL") {
        Some(dir) => {
            Ok(Some(faqbot::model::Semantic::load(Path::new(&dir), None).context("loading the model in FAQBOT_MODEL")?))
        }
        None => Ok(None),
    }
}

fn replies_per_chat(fake: &FakeTelegram) -> HashMap<i64, usize> {
    let mut received = HashMap::new();
    for call in fake.calls_of("sendMessage").into_iter().filter(|call| call.ok) {
        if let Some(chat) = call.chat_id() {
            *received.entry(chat).or_default() += 1;
        }
    }
    received
}

async fn throughput(users: usize, questions: usize) -> anyhow::Result<String> {
    let (fake, stop) = in_process(|options| {
        options.throttle = false;
        options.flood_per_minute = usize::MAX;
    })
    .await?;
    let texts = ["is ketamine legal?", "how much does it cost?", "can I drive after my infusion?"];
    let mut expected: HashMap<i64, usize> = HashMap::new();
    let started = Instant::now();
    for index in 0..questions {
        let user = 100_000 + (index % users) as i64;
        fake.push_text(user, texts[index % texts.len()]);
        *expected.entry(user).or_default() += 1;
    }
    let replies = fake.wait_for_count("sendMessage", questions, Duration::from_secs(300)).await;
    let elapsed = started.elapsed();
    let received = replies_per_chat(&fake);
    let _ = stop.send(());
    let lost: usize = expected.iter().map(|(chat, n)| n.saturating_sub(received.get(chat).copied().unwrap_or(0))).sum();
    let repeated: usize =
        received.iter().map(|(chat, n)| n.saturating_sub(expected.get(chat).copied().unwrap_or(0))).sum();
    Ok(format!(
        "## throughput: {users} users, {questions} questions at once, throttling off, {}\n\n| measure | value |\n| --- | --- |\n| first update queued to last reply | {:.0} ms |\n| updates per second, end to end | {:.0} |\n| replies lost | {lost} |\n| replies repeated | {repeated} |\n",
        if std::env::var_os("FAQBOT_MODEL").is_some() { "with the model" } else { "words only" },
        elapsed.as_secs_f64() * 1e3,
        replies.min(questions) as f64 / elapsed.as_secs_f64(),
    ))
}

async fn burst(runs: usize) -> anyhow::Result<String> {
    let mut worst = Vec::new();
    for _ in 0..runs {
        let (fake, stop) = in_process(|_| {}).await?;
        let flooder = 7300;
        for index in 0..90 {
            fake.push_text(flooder, &format!("is ketamine legal? ({index})"));
        }
        let others: Vec<i64> = (1..=10).map(|index| 7300 + index).collect();
        let queued = Instant::now();
        for chat in &others {
            fake.push_text(*chat, "is ketamine addictive?");
        }
        let mut waits = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for chat in &others {
            while fake.delivered_to("sendMessage", *chat).is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            waits.push(queued.elapsed());
        }
        worst.push(waits.into_iter().max().unwrap_or_default());
        let _ = stop.send(());
    }
    worst.sort();
    let median = worst.get(worst.len() / 2).copied().unwrap_or_default();
    Ok(format!(
        "## burst: one user sends 90 at once, ten others one each (Telegram's limits on)\n\n| measure | value |\n| --- | --- |\n| longest wait of the ten, median of {runs} runs | {:.1} ms |\n| longest wait of the ten, worst run | {:.1} ms |\n",
        median.as_secs_f64() * 1e3,
        worst.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    ))
}

/// Peak and current resident memory of a process, in MiB (Linux).
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn backlog(per_second: u64, duration: Duration) -> anyhow::Result<String> {
    let data = tempfile::tempdir().context("temp dir")?;
    let fake = FakeTelegram::start().await.context("starting the fake Bot API")?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_faqbot"))
        .arg("serve")
        .env("TELOXIDE_TOKEN", "1:load-test")
        .env("TELOXIDE_API_URL", fake.url())
        .env("FAQBOT_DATA", data.path())
        .env("RUST_LOG", "warn")
        .env_remove("FAQBOT_KNOWLEDGE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting faqbot serve")?;
    let pid = child.id();
    if fake.wait_for_count("setMyCommands", 1, Duration::from_secs(30)).await == 0 {
        let _ = child.kill();
        bail!("the bot did not start");
    }
    let total = per_second * duration.as_secs();
    let first_chat = 900_000i64;
    let started = Instant::now();
    let mut most_waiting = 0i64;
    let waiting = || -> i64 {
        faqbot::store::Store::open_read_only(data.path())
            .and_then(|connection| {
                connection
                    .query_row("SELECT COUNT(*) FROM inbox WHERE state = 'pending'", [], |row| row.get(0))
                    .context("counting")
            })
            .unwrap_or(0)
    };
    for index in 0..total {
        // Paced from the start, so the rate holds whatever a push costs.
        let due = started + Duration::from_millis(index * 1000 / per_second);
        tokio::time::sleep_until(due.into()).await;
        fake.push_text(first_chat + index as i64, "is ketamine legal?");
        if index % per_second == 0 {
            most_waiting = most_waiting.max(waiting());
        }
    }
    let sent_during_load = fake.delivered("sendMessage");
    let waiting_at_end = waiting();
    let (peak_during_load, rss_at_end) = rss_mib(pid);
    let drained = fake.wait_for_count("sendMessage", total as usize, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    let (peak, _) = rss_mib(pid);
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    // Oldest first: replies should go out in the order the questions came.
    let order: Vec<i64> = fake.calls_of("sendMessage").iter().filter(|c| c.ok).filter_map(|c| c.chat_id()).collect();
    let out_of_order = order.windows(2).filter(|pair| pair[1] < pair[0]).count();
    let mut latest_so_far = i64::MIN;
    let mut worst_overtaken = 0i64;
    for chat in &order {
        latest_so_far = latest_so_far.max(*chat);
        worst_overtaken = worst_overtaken.max(latest_so_far - chat);
    }
    let repeated = replies_per_chat(&fake).values().filter(|n| **n > 1).count();
    Ok(format!(
        "## backlog: {per_second} questions/s from new users for {} s, release binary, Telegram's limits on\n\n| measure | value |\n| --- | --- |\n| questions | {total} |\n| replies during the load | {sent_during_load} ({:.1}/s) |\n| waiting in the inbox at the end of the load | {waiting_at_end} (most seen: {most_waiting}) |\n| peak RSS during the load | {peak_during_load:.1} MiB (RSS at its end {rss_at_end:.1} MiB) |\n| peak RSS until the backlog was served | {peak:.1} MiB |\n| all answered | {drained} of {total}, in {:.0} s |\n| answered twice | {repeated} |\n| replies out of arrival order (adjacent pairs) | {out_of_order} (furthest overtaken: {worst_overtaken} places) |\n",
        duration.as_secs(),
        sent_during_load as f64 / duration.as_secs_f64(),
        elapsed.as_secs_f64(),
    ))
}
