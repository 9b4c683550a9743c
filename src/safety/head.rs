//! A small linear head over sentence vectors: one weight per dimension and
//! class, plus a bias, fitted to the examples by ridge regression on one-hot
//! targets, each class weighted equally however many examples it has.
//! Closed form (a Cholesky solve), so the same examples always give the
//! same weights; fitted when the engine is built, never checked in.

use anyhow::bail;

use super::exemplars::Class;
use crate::model::DIMENSIONS;

const CLASSES: usize = Class::ALL.len();
/// The vector's dimensions plus the bias.
const WIDTH: usize = DIMENSIONS + 1;

/// How strongly weights are pulled toward zero: fitted on the tune set.
pub const LAMBDA: f64 = 0.3;

/// The fitted weights, row-major: `weights[d * CLASSES + c]`.
pub struct Head {
    weights: Vec<f32>,
}

impl Head {
    /// Fits the head to `vectors` (row-major, `DIMENSIONS` each) labelled
    /// `classes`. Fails only when there is nothing to fit.
    pub fn fit(vectors: &[f32], classes: &[Class], lambda: f64) -> anyhow::Result<Head> {
        let rows = classes.len();
        if rows == 0 || vectors.len() != rows * DIMENSIONS {
            bail!("cannot fit the safety head to {rows} examples and {} numbers", vectors.len());
        }
        let mut counts = [0usize; CLASSES];
        for class in classes {
            counts[class.index()] += 1;
        }
        // a = Σ w xxᵀ + λI (the bias unpenalised), b = Σ w x yᵀ.
        let mut a = vec![[0f64; WIDTH]; WIDTH];
        let mut b = vec![0f64; WIDTH * CLASSES];
        let examples: Vec<_> = vectors.chunks_exact(DIMENSIONS).zip(classes).collect();
        for chunk in examples.chunks(GRAM_BLOCK) {
            // A short last block leaves zero rows, which add nothing.
            let mut block = [[0f64; WIDTH]; GRAM_BLOCK];
            let mut scales = [0f64; GRAM_BLOCK];
            for ((x, scale), (row, class)) in block.iter_mut().zip(&mut scales).zip(chunk) {
                let weight = rows as f64 / (CLASSES as f64 * counts[class.index()] as f64);
                for (slot, value) in x.iter_mut().zip(*row) {
                    *slot = f64::from(*value);
                }
                x[DIMENSIONS] = 1.0;
                *scale = weight;
                for (i, value) in x.iter().enumerate() {
                    b[i * CLASSES + class.index()] += weight * value;
                }
            }
            add_gram(&mut a, &block, &scales);
        }
        let mut a: Vec<f64> = a.into_iter().flatten().collect();
        for i in 0..WIDTH {
            for j in 0..i {
                a[i * WIDTH + j] = a[j * WIDTH + i];
            }
            if i < DIMENSIONS {
                a[i * WIDTH + i] += lambda;
            }
        }
        let l = cholesky(&mut a)?;
        let mut weights = vec![0f32; WIDTH * CLASSES];
        let mut column = vec![0f64; WIDTH];
        for c in 0..CLASSES {
            for i in 0..WIDTH {
                column[i] = b[i * CLASSES + c];
            }
            solve(l, &mut column);
            for i in 0..WIDTH {
                weights[i * CLASSES + c] = column[i] as f32;
            }
        }
        Ok(Head { weights })
    }

    /// Each class's score for one vector, by `Class::index`.
    pub fn scores(&self, vector: &[f32]) -> [f32; CLASSES] {
        let mut out = [0f32; CLASSES];
        let bias = self.weights.get(DIMENSIONS * CLASSES..).unwrap_or_default();
        out.iter_mut().zip(bias).for_each(|(score, weight)| *score = *weight);
        for (value, row) in vector.iter().zip(self.weights.chunks_exact(CLASSES)) {
            for (score, weight) in out.iter_mut().zip(row) {
                *score += value * weight;
            }
        }
        out
    }
}

/// Examples folded into the Gram matrix at once: each element of its upper
/// triangle is then read and written once per eight examples, not once per
/// example (the fit took most of a warm reload's build).
const GRAM_BLOCK: usize = 8;

/// Adds `Σ scale · x xᵀ` over the rows of `block` to the upper triangle of `a`.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
fn add_gram(a: &mut [[f64; WIDTH]], block: &[[f64; WIDTH]; GRAM_BLOCK], scales: &[f64; GRAM_BLOCK]) {
    for (i, row) in a.iter_mut().enumerate() {
        let mut scaled = [0f64; GRAM_BLOCK];
        for ((slot, x), scale) in scaled.iter_mut().zip(block).zip(scales) {
            *slot = scale * x[i];
        }
        for j in i..WIDTH {
            let mut sum = 0.0;
            for (x, factor) in block.iter().zip(&scaled) {
                sum += factor * x[j];
            }
            row[j] += sum;
        }
    }
}

/// Factors the symmetric positive-definite `a` (WIDTH × WIDTH) in place into
/// its lower Cholesky factor.
fn cholesky(a: &mut [f64]) -> anyhow::Result<&[f64]> {
    for j in 0..WIDTH {
        let mut diagonal = a[j * WIDTH + j];
        for k in 0..j {
            diagonal -= a[j * WIDTH + k] * a[j * WIDTH + k];
        }
        if diagonal <= 0.0 || !diagonal.is_finite() {
            bail!("the safety examples do not determine the head (add more varied examples)");
        }
        let diagonal = diagonal.sqrt();
        a[j * WIDTH + j] = diagonal;
        for i in j + 1..WIDTH {
            let mut sum = a[i * WIDTH + j];
            for k in 0..j {
                sum -= a[i * WIDTH + k] * a[j * WIDTH + k];
            }
            a[i * WIDTH + j] = sum / diagonal;
        }
    }
    Ok(a)
}

/// Solves `L Lᵀ x = b` in place, given the lower factor `l`.
fn solve(l: &[f64], b: &mut [f64]) {
    for i in 0..WIDTH {
        let mut sum = b[i];
        for k in 0..i {
            sum -= l[i * WIDTH + k] * b[k];
        }
        b[i] = sum / l[i * WIDTH + i];
    }
    for i in (0..WIDTH).rev() {
        let mut sum = b[i];
        for k in i + 1..WIDTH {
            sum -= l[k * WIDTH + i] * b[k];
        }
        b[i] = sum / l[i * WIDTH + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_examples_score_their_own_class_highest() {
        // Two clusters along different axes, one class each, plus a few of every other class.
        let mut vectors = Vec::new();
        let mut classes = Vec::new();
        for (index, class) in Class::ALL.into_iter().enumerate() {
            for shift in 0..5 {
                let mut v = vec![0f32; DIMENSIONS];
                v[index] = 1.0;
                v[DIMENSIONS - 1 - shift] = 0.1;
                vectors.extend(v);
                classes.push(class);
            }
        }
        let head = Head::fit(&vectors, &classes, 0.01);
        assert!(head.is_ok());
        let Ok(head) = head else { return };
        for (index, class) in Class::ALL.into_iter().enumerate() {
            let mut v = vec![0f32; DIMENSIONS];
            v[index] = 1.0;
            let scores = head.scores(&v);
            let best = (0..CLASSES).max_by(|&a, &b| scores[a].total_cmp(&scores[b]));
            assert_eq!(best, Some(class.index()), "{scores:?}");
        }
        assert!(Head::fit(&[], &[], 0.3).is_err());
    }

    #[test]
    fn the_blocked_gram_matrix_is_the_sum_of_each_example_alone() {
        // Deterministic values in (-1, 1); a partial block of three rows.
        let value = |r: usize, i: usize| ((r * 7919 + i * 104_729) % 2001) as f64 / 1000.0 - 1.0;
        let mut block = [[0f64; WIDTH]; GRAM_BLOCK];
        let mut scales = [0f64; GRAM_BLOCK];
        for (r, (x, scale)) in block.iter_mut().zip(&mut scales).take(3).enumerate() {
            for (i, slot) in x.iter_mut().enumerate() {
                *slot = value(r, i);
            }
            *scale = 0.5 + r as f64;
        }
        let mut a = vec![[0f64; WIDTH]; WIDTH];
        add_gram(&mut a, &block, &scales);
        for (i, row) in a.iter().enumerate() {
            for (j, got) in row.iter().enumerate() {
                let expected: f64 =
                    if j < i { 0.0 } else { (0..3).map(|r| scales[r] * value(r, i) * value(r, j)).sum() };
                assert!((got - expected).abs() < 1e-12, "a[{i}][{j}] = {got} not {expected}");
            }
        }
    }
}
