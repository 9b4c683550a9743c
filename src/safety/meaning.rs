//! The screen's reading of meaning: each example of `safety.toml` as a
//! sentence vector; for a message's vector, the closest examples of each
//! class and the linear head's scores. Brute force: two thousand examples
//! cost well under a millisecond.

use super::exemplars::{Class, Exemplars};
use super::head::{Head, LAMBDA};
use super::stack::{self, Features, Stack};
use crate::model::{DIMENSIONS, Semantic, cosines, cosines_many};

/// Examples scanned together by `leave_one_out`.
const LEAVE_ONE_OUT_BLOCK: usize = 256;

/// How many of a class's closest examples are kept per query.
pub const TOP: usize = 5;

/// The embedded examples. Immutable once built.
pub struct Meaning {
    /// Row-major, one example per `DIMENSIONS` floats.
    vectors: Vec<f32>,
    classes: Vec<Class>,
    texts: Vec<String>,
    head: Head,
    stack: Stack,
    /// Examples embedded by this build (the rest came from the cache).
    pub embedded: usize,
}

/// A query's closest examples, per class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
    /// Per class (`Class::index`), the best `TOP` cosines, best first; a
    /// class with fewer examples is padded with -1.
    pub top: [[f32; TOP]; Class::ALL.len()],
    /// Per class, the index of its closest example.
    pub example: [Option<usize>; Class::ALL.len()],
}

impl Nearest {
    /// The mean of the class's `k` closest cosines: one lucky neighbour
    /// counts less than several agreeing ones.
    pub fn score(&self, class: Class, k: usize) -> f32 {
        let k = k.clamp(1, TOP);
        let top = &self.top[class.index()];
        top.iter().take(k).sum::<f32>() / k as f32
    }
}

impl Meaning {
    /// Embeds (or takes from the cache) every example. `ordinary` are more
    /// ordinary examples: the knowledge base's own phrasings, questions the
    /// bot exists to answer, so that its screen never refuses or alarms on them.
    pub fn build(exemplars: &Exemplars, ordinary: &[&str], semantic: &Semantic) -> anyhow::Result<Self> {
        let (classes, texts): (Vec<Class>, Vec<String>) = exemplars
            .examples()
            .chain(ordinary.iter().map(|text| (Class::Ordinary, *text)))
            .map(|(class, text)| (class, text.to_owned()))
            .unzip();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (vectors, embedded) = semantic.embed_all(&refs)?;
        let mut flat = Vec::with_capacity(vectors.len() * DIMENSIONS);
        for vector in &vectors {
            flat.extend_from_slice(vector);
        }
        let head = Head::fit(&flat, &classes, LAMBDA)?;
        Ok(Self { vectors: flat, classes, texts, head, stack: Stack::built_in()?, embedded })
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Every example's vector, row-major: what a message is scanned against.
    pub fn rows(&self) -> &[f32] {
        &self.vectors
    }

    /// The closest examples of every class to `query`.
    pub fn nearest(&self, query: &[f32]) -> Nearest {
        self.nearest_of(&cosines(query, &self.vectors), None)
    }

    /// `nearest` from a query's cosine with each example (`rows` order),
    /// leaving out the example at `skip`.
    pub fn nearest_of(&self, scanned: &[f32], skip: Option<usize>) -> Nearest {
        let mut nearest = Nearest { top: [[-1.0; TOP]; Class::ALL.len()], example: [None; Class::ALL.len()] };
        for (index, (&score, class)) in scanned.iter().zip(&self.classes).enumerate() {
            if skip == Some(index) {
                continue;
            }
            let top = &mut nearest.top[class.index()];
            if score > top[TOP - 1] {
                if score > top[0] {
                    nearest.example[class.index()] = Some(index);
                }
                top[TOP - 1] = score;
                top.sort_by(|a, b| b.total_cmp(a));
            }
        }
        nearest
    }

    /// The linear head's score for each class (`Class::index`).
    pub fn head(&self, query: &[f32]) -> [f32; Class::ALL.len()] {
        self.head.scores(query)
    }

    /// The calibrator's probability for each class (`Class::index`).
    pub fn calibrated(&self, nearest: &Nearest) -> [f32; Class::ALL.len()] {
        self.stack.probabilities(&stack::features(nearest))
    }

    /// Every example's calibrator inputs as a message would see them, its
    /// own vector left out, with its class: what `faqbot fit-screen` fits.
    pub fn leave_one_out(&self, progress: impl Fn(usize)) -> Vec<(Features, Class)> {
        let vectors: Vec<&[f32]> = self.vectors.chunks_exact(DIMENSIONS).collect();
        let mut out = Vec::with_capacity(vectors.len());
        // In blocks, each scanned in one pass over the examples (`cosines_many`).
        for (block, start) in vectors.chunks(LEAVE_ONE_OUT_BLOCK).zip((0..).step_by(LEAVE_ONE_OUT_BLOCK)) {
            progress(start);
            for ((offset, scanned), class) in
                cosines_many(block, &self.vectors).iter().enumerate().zip(self.classes.iter().skip(start))
            {
                out.push((stack::features(&self.nearest_of(scanned, Some(start + offset))), *class));
            }
        }
        out
    }

    /// An example's class and text, for `--explain`.
    pub fn example(&self, index: usize) -> Option<(Class, &str)> {
        Some((*self.classes.get(index)?, self.texts.get(index)?.as_str()))
    }
}
