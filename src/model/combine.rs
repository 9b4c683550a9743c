//! Messages that wait for the model together go through it together. Part of
//! a forward pass's cost is the same whatever it carries (reading 42 MB of
//! weights, each step's overhead): on one core a short question takes 8 ms
//! alone and eight take 29 ms together. So when many chats ask at once (a
//! burst after a post, a backlog after a restart), the questions that queue
//! while a pass runs are packed into the next pass. A lone message never
//! waits for company: it runs at once, as before.
//!
//! At most `runners` passes run at a time (one per core). Whoever queues a
//! job and finds a runner free becomes one: it takes the waiting jobs, oldest
//! first, runs them, hands every job its vectors and looks again; the others
//! sleep until their own vectors are there. A packed sequence's vector is
//! bit for bit the one it gets alone (`tests/model.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

use anyhow::anyhow;

use super::Vector;

/// Sequences one pass takes at most, however many wait (at least one job).
const PACKED: usize = 32;

type Job = (u64, Vec<Vec<u32>>);

#[derive(Default)]
struct Waiting {
    /// Jobs no runner has taken, oldest first.
    queue: VecDeque<Job>,
    /// Finished jobs' vectors, or the error that stopped their pass.
    done: HashMap<u64, Result<Vec<Vector>, String>>,
    running: usize,
    next: u64,
}

pub struct Combiner {
    runners: usize,
    waiting: Mutex<Waiting>,
    changed: Condvar,
}

impl Combiner {
    pub fn new(runners: usize) -> Self {
        Self { runners: runners.max(1), waiting: Mutex::new(Waiting::default()), changed: Condvar::new() }
    }

    /// The vectors of one job's sequences, in order, computed by `forward`
    /// alone or packed with other callers' jobs.
    pub fn run(
        &self,
        sequences: Vec<Vec<u32>>,
        forward: impl Fn(&[&[u32]]) -> anyhow::Result<Vec<Vector>>,
    ) -> anyhow::Result<Vec<Vector>> {
        let mut waiting = self.lock()?;
        let ticket = waiting.next;
        waiting.next += 1;
        waiting.queue.push_back((ticket, sequences));
        loop {
            if let Some(result) = waiting.done.remove(&ticket) {
                return result.map_err(|message| anyhow!(message));
            }
            if waiting.running < self.runners && !waiting.queue.is_empty() {
                let jobs = take(&mut waiting.queue);
                waiting.running += 1;
                drop(waiting);
                let results = pass(&jobs, &forward);
                waiting = self.lock()?;
                waiting.running -= 1;
                waiting.done.extend(results);
                self.changed.notify_all();
                continue;
            }
            waiting = self.changed.wait(waiting).map_err(|_| anyhow!("the model's queue lock is poisoned"))?;
        }
    }

    fn lock(&self) -> anyhow::Result<MutexGuard<'_, Waiting>> {
        self.waiting.lock().map_err(|_| anyhow!("the model's queue lock is poisoned"))
    }
}

/// The oldest jobs, up to `PACKED` sequences (always at least one job).
fn take(queue: &mut VecDeque<Job>) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut sequences = 0;
    while let Some((_, next)) = queue.front() {
        if !jobs.is_empty() && sequences + next.len() > PACKED {
            break;
        }
        sequences += next.len();
        jobs.extend(queue.pop_front());
    }
    jobs
}

/// One pass over every sequence of `jobs`, split back per job. A failed or
/// panicking pass fails each of its jobs, never leaves one waiting.
fn pass(
    jobs: &[Job],
    forward: &impl Fn(&[&[u32]]) -> anyhow::Result<Vec<Vector>>,
) -> Vec<(u64, Result<Vec<Vector>, String>)> {
    let packed: Vec<&[u32]> = jobs.iter().flat_map(|(_, sequences)| sequences.iter().map(Vec::as_slice)).collect();
    let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| forward(&packed))) {
        Ok(Ok(vectors)) if vectors.len() == packed.len() => Ok(vectors),
        Ok(Ok(vectors)) => Err(format!("the model gave {} vectors for {} texts", vectors.len(), packed.len())),
        Ok(Err(err)) => Err(format!("{err:#}")),
        Err(_) => Err(String::from("the model's pass panicked")),
    };
    match outcome {
        Ok(vectors) => {
            let mut vectors = vectors.into_iter();
            jobs.iter()
                .map(|(ticket, sequences)| (*ticket, Ok(vectors.by_ref().take(sequences.len()).collect())))
                .collect()
        }
        Err(message) => jobs.iter().map(|(ticket, _)| (*ticket, Err(message.clone()))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A stand-in pass: each sequence's vector is its ids as numbers.
    fn echo(batch: &[&[u32]]) -> anyhow::Result<Vec<Vector>> {
        Ok(batch.iter().map(|ids| ids.iter().map(|&id| id as f32).collect()).collect())
    }

    #[test]
    fn a_lone_job_runs_at_once_and_gets_its_own_vectors() {
        let combiner = Combiner::new(2);
        let vectors = combiner.run(vec![vec![1, 2], vec![3]], echo);
        assert_eq!(vectors.ok(), Some(vec![vec![1.0, 2.0], vec![3.0]]));
    }

    #[test]
    fn jobs_that_queue_during_a_pass_share_the_next_and_each_gets_its_own() {
        let combiner = Combiner::new(1);
        let passes = AtomicUsize::new(0);
        let started = Barrier::new(2);
        let release = Barrier::new(2);
        let forward = |batch: &[&[u32]]| {
            // The first pass holds until every other job is queued.
            if passes.fetch_add(1, Ordering::SeqCst) == 0 {
                started.wait();
                release.wait();
            }
            echo(batch)
        };
        let (combiner, forward) = (&combiner, &forward);
        std::thread::scope(|scope| {
            let first = scope.spawn(|| combiner.run(vec![vec![0]], forward));
            started.wait();
            let others: Vec<_> = (1..=6u32)
                .map(|n| (n, scope.spawn(move || combiner.run(vec![vec![n], vec![n, n]], forward))))
                .collect();
            // Wait until all six are queued behind the running pass.
            while combiner.lock().map_or(0, |waiting| waiting.queue.len()) < 6 {
                std::thread::yield_now();
            }
            release.wait();
            assert_eq!(first.join().ok().and_then(Result::ok), Some(vec![vec![0.0]]));
            for (n, other) in others {
                let n = n as f32;
                assert_eq!(other.join().ok().and_then(Result::ok), Some(vec![vec![n], vec![n, n]]));
            }
        });
        assert_eq!(passes.load(Ordering::SeqCst), 2, "the six waiting jobs went through in one pass");
    }

    #[test]
    fn a_failing_or_panicking_pass_fails_its_jobs_and_the_next_one_runs() {
        let combiner = Combiner::new(1);
        let failed = combiner.run(vec![vec![1]], |_: &[&[u32]]| Err(anyhow!("out of memory")));
        assert!(failed.is_err_and(|err| err.to_string().contains("out of memory")));
        let panicked = combiner.run(vec![vec![1]], |_: &[&[u32]]| -> anyhow::Result<Vec<Vector>> { panic!("boom") });
        assert!(panicked.is_err());
        assert_eq!(combiner.run(vec![vec![7]], echo).ok(), Some(vec![vec![7.0]]));
    }

    #[test]
    fn a_pass_takes_at_most_packed_sequences_unless_one_job_has_more() {
        let mut queue: VecDeque<Job> = (0..10).map(|ticket| (ticket, vec![vec![1]; 5])).collect();
        assert_eq!(take(&mut queue).len(), PACKED / 5);
        let mut queue: VecDeque<Job> = VecDeque::from([(0, vec![vec![1]; PACKED + 3]), (1, vec![vec![1]])]);
        assert_eq!(take(&mut queue).len(), 1);
        assert_eq!(queue.len(), 1);
    }
}
