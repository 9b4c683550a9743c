//! Telegram's rate limits for sending messages: about 30 a second overall
//! (spread evenly, one every 33 ms), one a second and 20 a minute per chat,
//! 20 a minute per group. A message under the limits goes at once; one over
//! them waits exactly as long as needed. (teloxide's Throttle releases its queue every 250 ms, which would
//! add up to a quarter second to every reply.)

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_second_overall: usize,
    pub per_second_chat: usize,
    pub per_minute_chat: usize,
    pub per_minute_group: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { per_second_overall: 30, per_second_chat: 1, per_minute_chat: 20, per_minute_group: 20 }
    }
}

/// Send times within the last minute.
#[derive(Default)]
struct History {
    overall: VecDeque<Instant>,
    chats: HashMap<i64, VecDeque<Instant>>,
}

pub struct RateLimiter {
    limits: Option<Limits>,
    history: Mutex<History>,
    /// Taken (first come, first served) to wait for the overall limit, so a
    /// backlog goes out oldest first rather than to whoever wakes first.
    queue: tokio::sync::Mutex<()>,
}

impl RateLimiter {
    /// `None` sends everything at once (load benchmarks against a fake API only).
    pub fn new(limits: Option<Limits>) -> Self {
        Self { limits, history: Mutex::new(History::default()), queue: tokio::sync::Mutex::new(()) }
    }

    /// Waits until a message to `chat` is within the limits, and counts it.
    pub async fn acquire(&self, chat: i64) {
        let Some(limits) = self.limits else {
            return;
        };
        // The chat's own limits first, without holding up other chats.
        loop {
            let wait = {
                let mut history = self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                chat_wait(&mut history, &limits, chat, Instant::now())
            };
            match wait {
                None => break,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
        let _turn = self.queue.lock().await;
        loop {
            let wait = {
                let mut history = self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                reserve(&mut history, &limits, chat, Instant::now())
            };
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}

/// How long `chat`'s own limits say to wait, if at all (nothing is counted).
fn chat_wait(history: &mut History, limits: &Limits, chat: i64, now: Instant) -> Option<Duration> {
    reserve_or_wait(history, limits, chat, now, false)
}

fn reserve(history: &mut History, limits: &Limits, chat: i64, now: Instant) -> Option<Duration> {
    reserve_or_wait(history, limits, chat, now, true)
}

/// Counts a message to `chat` at `now` if the limits allow it (`None`), or
/// says how long to wait before trying again.
/// With `overall` false only the chat's limits are checked and nothing is counted.
fn reserve_or_wait(history: &mut History, limits: &Limits, chat: i64, now: Instant, overall: bool) -> Option<Duration> {
    prune(&mut history.overall, now, SECOND);
    let group = chat < 0;
    let times = history.chats.entry(chat).or_default();
    prune(times, now, MINUTE);
    let last_second = times.iter().rev().take_while(|time| now.duration_since(**time) < SECOND).count();
    let per_minute = if group { limits.per_minute_group } else { limits.per_minute_chat };
    let mut wait = Duration::ZERO;
    if overall
        && history.overall.len() >= limits.per_second_overall
        && let Some(first) = history.overall.front()
    {
        wait = wait.max(SECOND.saturating_sub(now.duration_since(*first)));
    }
    // Spread evenly rather than in bursts of 30: kinder to Telegram, and
    // fewer sends are on the wire at any instant (what a kill -9 can repeat).
    let gap = SECOND / limits.per_second_overall.max(1) as u32;
    if overall && let Some(last) = history.overall.back() {
        wait = wait.max(gap.saturating_sub(now.duration_since(*last)));
    }
    if !group && last_second >= limits.per_second_chat {
        let oldest_in_second = times.iter().rev().nth(limits.per_second_chat.saturating_sub(1));
        if let Some(time) = oldest_in_second {
            wait = wait.max(SECOND.saturating_sub(now.duration_since(*time)));
        }
    }
    if times.len() >= per_minute
        && let Some(first) = times.front()
    {
        wait = wait.max(MINUTE.saturating_sub(now.duration_since(*first)));
    }
    if wait > Duration::ZERO {
        return Some(wait);
    }
    if !overall {
        return None;
    }
    times.push_back(now);
    history.overall.push_back(now);
    if history.chats.len() > 10_000 {
        history.chats.retain(|_, times| times.back().is_some_and(|last| now.duration_since(*last) < MINUTE));
    }
    None
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times.front().is_some_and(|first| now.duration_since(*first) >= window) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_second_per_chat_thirty_overall_and_twenty_a_minute_in_groups() {
        let limits = Limits::default();
        let mut history = History::default();
        let start = Instant::now();
        assert_eq!(reserve(&mut history, &limits, 1, start), None);
        let wait = reserve(&mut history, &limits, 1, start + Duration::from_millis(300));
        assert_eq!(wait, Some(Duration::from_millis(700)));
        assert_eq!(reserve(&mut history, &limits, 1, start + SECOND), None);
        // Other chats go one after another, evenly spread, 30 in a second overall.
        let gap = SECOND / 30;
        assert_eq!(reserve(&mut history, &limits, 2, start + SECOND), Some(gap));
        for chat in 2..=30u32 {
            let at = start + SECOND + gap * (chat - 1);
            assert_eq!(reserve(&mut history, &limits, i64::from(chat), at), None, "chat {chat}");
        }
        assert!(reserve(&mut history, &limits, 99, start + SECOND + gap * 29).is_some());
        // A group may get 20 messages a minute, several in a second.
        let mut history = History::default();
        for n in 0..20 {
            assert_eq!(reserve(&mut history, &limits, -5, start + Duration::from_millis(n * 34)), None);
        }
        assert!(reserve(&mut history, &limits, -5, start + SECOND).is_some_and(|wait| wait > Duration::from_secs(50)));
    }
}
