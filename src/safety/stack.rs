//! A calibrator stacked on the nearest examples: a multinomial logistic
//! regression from each class's closest and five-closest cosines to a
//! probability per class. The nearest-example rule asks "is a refusal
//! example close, and closer than every other class?"; this learns how much
//! each class's closeness counts against the others. It declines requests
//! the rule answered, such as "I think I have BPD, can you confirm".
//!
//! Its inputs are cosines, not raw vector dimensions, so weights fitted on
//! the shipped examples still hold when curators add examples or when a
//! second knowledge base brings its own phrasings. The weights are checked
//! in (`stack.txt`), written by `faqbot fit-screen`: fitting needs every
//! example's neighbours without itself, seconds of work that start-up
//! should not pay.

use anyhow::{Context, bail};

use super::exemplars::Class;
use super::meaning::{Nearest, TOP};

const CLASSES: usize = Class::ALL.len();
/// Per class: the closest example's cosine and the mean of the `TOP` closest.
pub const FEATURES: usize = 2 * CLASSES;

pub type Features = [f32; FEATURES];

/// The weights shipped with the binary.
pub const BUILT_IN: &str = include_str!("stack.txt");

/// Full-batch gradient descent: deterministic, and at 15 inputs it
/// converges well within this many steps.
const STEPS: usize = 3000;
const LEARNING_RATE: f64 = 1.0;
/// Pulls weights toward zero (not the biases).
const L2: f64 = 1e-4;

/// The fitted calibrator.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    /// Each feature's mean and spread over the fitting examples: inputs are
    /// standardised before weighting.
    mean: Features,
    scale: Features,
    /// `weights[f][c]`; the last row is the bias.
    weights: [[f32; CLASSES]; FEATURES + 1],
}

/// The calibrator's inputs for one text's nearest examples.
pub fn features(nearest: &Nearest) -> Features {
    let mut out = [0.0; FEATURES];
    for class in Class::ALL {
        let i = class.index();
        out[2 * i] = nearest.top[i][0];
        out[2 * i + 1] = nearest.score(class, TOP);
    }
    out
}

impl Stack {
    pub fn built_in() -> anyhow::Result<Stack> {
        Stack::parse(BUILT_IN).context("reading the built-in safety calibrator (src/safety/stack.txt)")
    }

    /// Each class's probability (by `Class::index`), summing to 1.
    pub fn probabilities(&self, features: &Features) -> [f32; CLASSES] {
        let mut logits = self.weights[FEATURES].map(f64::from);
        for (f, value) in features.iter().enumerate() {
            let x = f64::from((value - self.mean[f]) / self.scale[f]);
            for (logit, weight) in logits.iter_mut().zip(&self.weights[f]) {
                *logit += x * f64::from(*weight);
            }
        }
        softmax(&logits).map(|p| p as f32)
    }

    /// Fits the calibrator to labelled feature rows, each class weighted
    /// equally however many rows it has.
    pub fn fit(rows: &[Features], classes: &[Class]) -> anyhow::Result<Stack> {
        if rows.is_empty() || rows.len() != classes.len() {
            bail!("cannot fit the safety calibrator to {} rows and {} labels", rows.len(), classes.len());
        }
        let mut counts = [0usize; CLASSES];
        for class in classes {
            counts[class.index()] += 1;
        }
        if let Some(class) = Class::ALL.into_iter().find(|class| counts[class.index()] == 0) {
            bail!("no {} examples to fit the safety calibrator to", class.as_str());
        }
        let n = rows.len() as f64;
        let mut mean = [0f64; FEATURES];
        let mut scale = [0f64; FEATURES];
        for row in rows {
            for (m, value) in mean.iter_mut().zip(row) {
                *m += f64::from(*value) / n;
            }
        }
        for row in rows {
            for ((s, value), m) in scale.iter_mut().zip(row).zip(&mean) {
                *s += (f64::from(*value) - m).powi(2) / n;
            }
        }
        let scale = scale.map(|variance| variance.sqrt().max(1e-6));
        let inputs: Vec<[f64; FEATURES + 1]> = rows
            .iter()
            .map(|row| {
                let mut x = [1.0; FEATURES + 1];
                for f in 0..FEATURES {
                    x[f] = (f64::from(row[f]) - mean[f]) / scale[f];
                }
                x
            })
            .collect();
        let row_weight: Vec<f64> =
            classes.iter().map(|class| n / (CLASSES as f64 * counts[class.index()] as f64)).collect();
        let mut weights = [[0f64; CLASSES]; FEATURES + 1];
        for _ in 0..STEPS {
            let mut gradient = [[0f64; CLASSES]; FEATURES + 1];
            for ((x, class), w) in inputs.iter().zip(classes).zip(&row_weight) {
                let mut logits = [0f64; CLASSES];
                for (f, value) in x.iter().enumerate() {
                    for (logit, weight) in logits.iter_mut().zip(&weights[f]) {
                        *logit += value * weight;
                    }
                }
                let p = softmax(&logits);
                for (f, value) in x.iter().enumerate() {
                    for (c, g) in gradient[f].iter_mut().enumerate() {
                        let target = if c == class.index() { 1.0 } else { 0.0 };
                        *g += w * (p[c] - target) * value / n;
                    }
                }
            }
            for (f, (row, g)) in weights.iter_mut().zip(&gradient).enumerate() {
                for (weight, g) in row.iter_mut().zip(g) {
                    let decay = if f < FEATURES { L2 * *weight } else { 0.0 };
                    *weight -= LEARNING_RATE * (g + decay);
                }
            }
        }
        Ok(Stack {
            mean: mean.map(|m| m as f32),
            scale: scale.map(|s| s as f32),
            weights: weights.map(|row| row.map(|w| w as f32)),
        })
    }

    /// The weights as `parse` reads them, under `header` (comment lines).
    pub fn render(&self, header: &str) -> String {
        let line = |values: &[f32]| values.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>().join(" ");
        let mut out = String::new();
        for comment in header.lines() {
            out.push_str(&format!("# {comment}\n").replace("# \n", "#\n"));
        }
        out.push_str(&format!("mean {}\n", line(&self.mean)));
        out.push_str(&format!("scale {}\n", line(&self.scale)));
        for (f, row) in self.weights.iter().enumerate() {
            // Rows 2c and 2c + 1 are class c's; the last is the bias.
            let kind = if f % 2 == 0 { "closest" } else { "mean5" };
            let name = Class::ALL.get(f / 2).map_or_else(|| "bias".to_owned(), |c| format!("{}.{kind}", c.as_str()));
            out.push_str(&format!("{name} {}\n", line(row)));
        }
        out
    }

    /// Reads weights written by `render`: a `mean` and a `scale` line of
    /// FEATURES numbers, then FEATURES + 1 named rows of one number per class.
    pub fn parse(text: &str) -> anyhow::Result<Stack> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
        let mut numbers = |expected: usize, what: &str| -> anyhow::Result<Vec<f32>> {
            let Some((number, line)) = lines.next() else { bail!("ends before the {what} line") };
            let values: Vec<f32> = line
                .split_whitespace()
                .skip(1)
                .map(|value| value.parse::<f32>().with_context(|| format!("line {number}: {value:?} is not a number")))
                .collect::<anyhow::Result<_>>()?;
            if values.len() != expected || values.iter().any(|v| !v.is_finite()) {
                bail!("line {number}: the {what} line needs {expected} finite numbers, has {}", values.len());
            }
            Ok(values)
        };
        let mut mean = [0.0; FEATURES];
        mean.copy_from_slice(&numbers(FEATURES, "mean")?);
        let mut scale = [0.0; FEATURES];
        scale.copy_from_slice(&numbers(FEATURES, "scale")?);
        if scale.iter().any(|s| *s <= 0.0) {
            bail!("every scale must be positive");
        }
        let mut weights = [[0.0; CLASSES]; FEATURES + 1];
        for row in &mut weights {
            row.copy_from_slice(&numbers(CLASSES, "weight")?);
        }
        if let Some((number, _)) = lines.next() {
            bail!("line {number}: more lines than the calibrator has weights");
        }
        Ok(Stack { mean, scale, weights })
    }
}

fn softmax<const N: usize>(logits: &[f64; N]) -> [f64; N] {
    let max = logits.iter().copied().fold(f64::MIN, f64::max);
    let exps = logits.map(|logit| (logit - max).exp());
    let sum: f64 = exps.iter().sum();
    exps.map(|e| e / sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows where one class's closeness stands out, with a little spread.
    fn rows() -> (Vec<Features>, Vec<Class>) {
        let mut rows = Vec::new();
        let mut classes = Vec::new();
        for class in Class::ALL {
            for shift in 0..6 {
                let mut row = [0.3 + 0.01 * shift as f32; FEATURES];
                row[2 * class.index()] = 0.9;
                row[2 * class.index() + 1] = 0.8;
                rows.push(row);
                classes.push(class);
            }
        }
        (rows, classes)
    }

    #[test]
    fn the_class_whose_examples_are_closest_is_the_most_probable() {
        let (rows, classes) = rows();
        let Ok(stack) = Stack::fit(&rows, &classes) else { panic!("the fit failed") };
        for (row, class) in rows.iter().zip(&classes) {
            let p = stack.probabilities(row);
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{p:?}");
            let best = (0..CLASSES).max_by(|&a, &b| p[a].total_cmp(&p[b]));
            assert_eq!(best, Some(class.index()), "{p:?}");
        }
    }

    #[test]
    fn written_weights_read_back_the_same() {
        let (rows, classes) = rows();
        let Ok(stack) = Stack::fit(&rows, &classes) else { panic!("the fit failed") };
        let text = stack.render("two lines\nof header");
        assert!(text.starts_with("# two lines\n# of header\nmean "), "{text}");
        let Ok(read) = Stack::parse(&text) else { panic!("{text}") };
        let row = rows[0];
        let (a, b) = (stack.probabilities(&row), read.probabilities(&row));
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4), "{a:?} {b:?}");
    }

    #[test]
    fn the_shipped_weights_read_and_broken_ones_say_where() {
        assert!(Stack::built_in().is_ok());
        let short = BUILT_IN.lines().take(5).collect::<Vec<_>>().join("\n");
        let Err(error) = Stack::parse(&short) else { panic!("a short file was read") };
        assert!(error.to_string().contains("ends before"), "{error}");
        let garbled = BUILT_IN.replacen("mean 0", "mean x", 1);
        let Err(error) = Stack::parse(&garbled) else { panic!("a garbled file was read") };
        assert!(error.to_string().contains("is not a number"), "{error}");
        assert!(Stack::fit(&[], &[]).is_err());
        let (rows, mut classes) = rows();
        classes.iter_mut().for_each(|class| *class = Class::Ordinary);
        assert!(Stack::fit(&rows, &classes).is_err(), "a class without rows was fitted");
    }
}
