//! The per-user flood guard: more than `limit` messages within `window` gets
//! one notice, then silence until that person's rate drops back under the
//! limit, so one user cannot starve the others.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the limit for the first time: send the notice once.
    Notice,
    /// Still over the limit: say nothing.
    Silent,
}

pub struct FloodGuard {
    limit: usize,
    window: Duration,
    users: HashMap<u64, Recent>,
}

#[derive(Default)]
struct Recent {
    times: VecDeque<Instant>,
    notified: bool,
}

impl FloodGuard {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self { limit, window, users: HashMap::new() }
    }

    /// Records one message from `user` at `now` and says what to do with it.
    pub fn check(&mut self, user: u64, now: Instant) -> Verdict {
        if self.users.len() > 10_000 {
            // Forget people who have been quiet for a whole window.
            let window = self.window;
            self.users.retain(|_, recent| recent.times.back().is_some_and(|last| now.duration_since(*last) < window));
        }
        let recent = self.users.entry(user).or_default();
        while recent.times.front().is_some_and(|first| now.duration_since(*first) >= self.window) {
            recent.times.pop_front();
        }
        recent.times.push_back(now);
        if recent.times.len() <= self.limit {
            recent.notified = false;
            return Verdict::Allow;
        }
        if recent.notified {
            return Verdict::Silent;
        }
        recent.notified = true;
        Verdict::Notice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notice_then_silence_until_calm_and_others_unaffected() {
        let mut guard = FloodGuard::new(3, Duration::from_secs(60));
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let verdicts: Vec<Verdict> = (0..6).map(|i| guard.check(1, at(i))).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Allow, Allow, Allow, Notice, Silent, Silent]);
        assert_eq!(guard.check(2, at(6)), Allow, "another user is not affected");
        // A minute after the burst the window is clear again.
        assert_eq!(guard.check(1, at(70)), Allow);
    }
}
