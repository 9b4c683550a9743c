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
        let mut a = vec![0f64; WIDTH * WIDTH];
        let mut b = vec![0f64; WIDTH * CLASSES];
        let mut x = [0f64; WIDTH];
        for (row, class) in vectors.chunks_exact(DIMENSIONS).zip(classes) {
            let weight = rows as f64 / (CLASSES as f64 * counts[class.index()] as f64);
            for (slot, value) in x.iter_mut().zip(row) {
                *slot = f64::from(*value);
            }
            x[DIMENSIONS] = 1.0;
            for i in 0..WIDTH {
                let wx = weight * x[i];
                // Upper triangle only; mirrored below.
                for j in i..WIDTH {
                    a[i * WIDTH + j] += wx * x[j];
                }
                b[i * CLASSES + class.index()] += wx;
            }
        }
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
}
