//! Average-linkage clustering of sentence vectors, cut at a cosine
//! threshold: two groups merge while the mean cosine over all their pairs of
//! members is at least the threshold. Pure and deterministic (ties go to the
//! lower index), with no notion of questions or entries.
//!
//! It uses the nearest-neighbour chain, so n items cost O(n²) time and one
//! n×n matrix; callers bound n.

use crate::model::cosine;

/// Clusters `vectors` (L2-normalised) so that every pair of clusters left
/// apart has a mean pairwise cosine below `threshold`. Each cluster lists its
/// members' indices in ascending order; clusters are ordered by their first
/// member.
pub fn average_linkage(vectors: &[Vec<f32>], threshold: f32) -> Vec<Vec<usize>> {
    let n = vectors.len();
    let mut similarity = vec![0.0f32; n * n];
    for i in 0..n {
        for j in (i + 1)..n {
            let (Some(a), Some(b)) = (vectors.get(i), vectors.get(j)) else { continue };
            let score = cosine(a, b);
            similarity[i * n + j] = score;
            similarity[j * n + i] = score;
        }
    }
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    // A cluster lives at the index of its first member until merged away.
    let mut active = vec![true; n];
    // Clusters that can no longer merge with anything.
    let mut finished = vec![false; n];
    let mut chain: Vec<usize> = Vec::new();
    loop {
        if chain.is_empty() {
            match (0..n).find(|&i| active[i] && !finished[i]) {
                Some(start) => chain.push(start),
                None => break,
            }
        }
        let Some(&tip) = chain.last() else { break };
        let previous = chain.len().checked_sub(2).and_then(|at| chain.get(at)).copied();
        // The tip's nearest open neighbour; on a tie the chain's previous
        // element wins, which is what guarantees the chain ends.
        let mut best: Option<(usize, f32)> = None;
        for other in (0..n).filter(|&other| other != tip && active[other] && !finished[other]) {
            let score = similarity[tip * n + other];
            let better = match best {
                None => true,
                Some((_, top)) => score > top || (score == top && Some(other) == previous),
            };
            if better {
                best = Some((other, score));
            }
        }
        match best {
            Some((other, score)) if score >= threshold => {
                if Some(other) == previous {
                    chain.truncate(chain.len() - 2);
                    merge(&mut similarity, &mut members, &mut active, n, tip, other);
                } else {
                    chain.push(other);
                }
            }
            // Average linkage never raises a similarity by merging, so
            // nothing can bring this cluster above the threshold later. Only
            // a chain's first element can get here: every later one is at
            // least `threshold` from its predecessor.
            _ => {
                finished[tip] = true;
                chain.clear();
            }
        }
    }
    let mut clusters: Vec<Vec<usize>> =
        members.into_iter().zip(&active).filter(|(_, alive)| **alive).map(|(cluster, _)| cluster).collect();
    for cluster in &mut clusters {
        cluster.sort_unstable();
    }
    clusters.sort_by_key(|cluster| cluster.first().copied());
    clusters
}

/// Merges clusters `a` and `b` into the lower index, updating similarities by
/// the Lance–Williams rule for average linkage.
fn merge(similarity: &mut [f32], members: &mut [Vec<usize>], active: &mut [bool], n: usize, a: usize, b: usize) {
    let (keep, gone) = if a < b { (a, b) } else { (b, a) };
    let (size_keep, size_gone) = (members[keep].len() as f32, members[gone].len() as f32);
    for other in (0..n).filter(|&other| active[other] && other != keep && other != gone) {
        let merged = (size_keep * similarity[keep * n + other] + size_gone * similarity[gone * n + other])
            / (size_keep + size_gone);
        similarity[keep * n + other] = merged;
        similarity[other * n + keep] = merged;
    }
    let moved = std::mem::take(&mut members[gone]);
    members[keep].extend(moved);
    active[gone] = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(x: f32, y: f32) -> Vec<f32> {
        let norm = (x * x + y * y).sqrt();
        vec![x / norm, y / norm]
    }

    #[test]
    fn close_vectors_group_and_far_ones_stay_apart() {
        let vectors = [unit(1.0, 0.0), unit(0.0, 1.0), unit(1.0, 0.1), unit(0.1, 1.0), unit(-1.0, 0.0)];
        assert_eq!(average_linkage(&vectors, 0.9), [vec![0, 2], vec![1, 3], vec![4]]);
        // Everything merges at a threshold below every cosine.
        assert_eq!(average_linkage(&vectors, -1.0), [vec![0, 1, 2, 3, 4]]);
        assert_eq!(average_linkage(&[], 0.5), Vec::<Vec<usize>>::new());
    }

    #[test]
    fn a_chain_of_neighbours_does_not_merge_ends_that_are_far_apart() {
        // Each neighbour is close, the ends are not: single linkage would
        // make one group, average linkage makes two.
        let vectors: Vec<Vec<f32>> = (0..6).map(|step| unit(1.0, step as f32 * 0.35)).collect();
        let clusters = average_linkage(&vectors, 0.95);
        assert!(clusters.len() >= 2, "{clusters:?}");
    }
}
