//! The sentence-embedding model (all-MiniLM-L6-v2) run in-process with
//! candle: WordPiece tokens → a 6-layer BERT encoder → the mean of the last
//! layer's token vectors → L2-normalised 384-dimensional vector.
//!
//! The encoder is written out here (about a hundred lines over `candle-nn`)
//! rather than taken from `candle-transformers`, which would compile every
//! model it ships for the one we use. This module loads and runs the model;
//! it does not fetch files (`fetch`) or decide anything from the vectors.

use std::path::Path;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationParams};

/// Dimensions of a sentence vector.
pub const DIMENSIONS: usize = 384;
/// The model was trained on at most this many word pieces; more are cut.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass when embedding many.
const BATCH: usize = 32;

const HIDDEN: usize = 384;
const HEADS: usize = 12;
const HEAD_SIZE: usize = HIDDEN / HEADS;
const LAYERS: usize = 6;
const INTERMEDIATE: usize = 1536;
const VOCABULARY: usize = 30_522;
const POSITIONS: usize = 512;
const LAYER_NORM_EPS: f64 = 1e-12;

/// One L2-normalised sentence vector.
pub type Vector = Vec<f32>;

/// Cosine similarity of two normalised vectors: their dot product.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let [score] = dots(a, [b]);
    score
}

/// The cosine of `query` with each vector of `rows` (row-major, `DIMENSIONS`
/// floats each): the scans of the phrasings and of the safety examples.
/// Compiled for several instruction sets and chosen when first called: the
/// portable build uses 4-wide SSE only, and the self-test of a reload is
/// mostly these scans.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn cosines(query: &[f32], rows: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() / DIMENSIONS);
    let (groups, rest) = rows.as_chunks::<{ DIMENSIONS * ROWS_AT_ONCE }>();
    for group in groups {
        out.extend(dots(query, rows_of(group)));
    }
    for row in rest.chunks_exact(DIMENSIONS) {
        out.extend(dots(query, [row]));
    }
    out
}

/// `cosines` for many queries at once: one row of cosines per query, each
/// value bit for bit what `cosines` gives (the same arithmetic for every
/// pair). A block of queries shares each pass over `rows`, so the vectors
/// come from memory once per block instead of once per query: the self-test
/// of a reload scans the same rows for every phrasing.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn cosines_many(queries: &[&[f32]], rows: &[f32]) -> Vec<Vec<f32>> {
    let count = rows.len() / DIMENSIONS;
    let mut out: Vec<Vec<f32>> = queries.iter().map(|_| Vec::with_capacity(count)).collect();
    let (groups, rest) = rows.as_chunks::<{ DIMENSIONS * ROWS_AT_ONCE }>();
    for (block, outs) in queries.chunks(QUERY_BLOCK).zip(out.chunks_mut(QUERY_BLOCK)) {
        for group in groups {
            let group = rows_of(group);
            for (query, out) in block.iter().zip(outs.iter_mut()) {
                out.extend(dots(query, group));
            }
        }
        for row in rest.chunks_exact(DIMENSIONS) {
            for (query, out) in block.iter().zip(outs.iter_mut()) {
                out.extend(dots(query, [row]));
            }
        }
    }
    out
}

/// Queries per pass of `cosines_many`: they stay in the first-level cache
/// while a group of rows is read (16 × 1.5 KB).
const QUERY_BLOCK: usize = 16;

/// Rows a scan reads at once. Each dot product's additions wait on one
/// another; eight independent ones overlap, where a single one left the
/// adders idle most of the time.
const ROWS_AT_ONCE: usize = 8;

/// The running sums of a dot product: one 512-bit register, or two 256-bit.
const LANES: usize = 16;
// `pairwise` adds up exactly this many lanes.
const _: () = assert!(LANES == 16);

fn rows_of(group: &[f32; DIMENSIONS * ROWS_AT_ONCE]) -> [&[f32]; ROWS_AT_ONCE] {
    let (rows, _) = group.as_chunks::<DIMENSIONS>();
    std::array::from_fn(|index| rows.get(index).map_or(&[][..], |row| &row[..]))
}

/// The dot products of `query` with each of `rows`. Every pair gets the same
/// arithmetic in the same order, however many rows come at once: `LANES`
/// running sums, added up pairwise at the end. Inlined into each version of
/// the scans, so that it is compiled for its instruction set.
#[inline(always)]
fn dots<const N: usize>(query: &[f32], rows: [&[f32]; N]) -> [f32; N] {
    // Fixed lengths let the compiler drop every bounds check and unroll;
    // vectors are always `DIMENSIONS` long, the general case is for safety.
    match (fixed(query), rows.map(fixed)) {
        (Some(query), fixed_rows) if fixed_rows.iter().all(Option::is_some) => {
            dots_fixed(query, fixed_rows.map(|row| row.unwrap_or(query)))
        }
        _ => rows.map(|row| dot_any(query, row)),
    }
}

fn fixed(vector: &[f32]) -> Option<&[f32; DIMENSIONS]> {
    vector.try_into().ok()
}

/// `dots` of vectors of the model's length.
#[inline(always)]
fn dots_fixed<const N: usize>(query: &[f32; DIMENSIONS], rows: [&[f32; DIMENSIONS]; N]) -> [f32; N] {
    let (query, _) = query.as_chunks::<LANES>();
    let rows = rows.map(|row| row.as_chunks::<LANES>().0);
    let mut sums = [[0f32; LANES]; N];
    for chunk in 0..DIMENSIONS / LANES {
        for (sum, row) in sums.iter_mut().zip(&rows) {
            for lane in 0..LANES {
                sum[lane] += query[chunk][lane] * row[chunk][lane];
            }
        }
    }
    sums.map(|sum| pairwise(&sum))
}

/// The same arithmetic as `dots_fixed` for any lengths (extra values of the
/// longer one are ignored).
fn dot_any(query: &[f32], row: &[f32]) -> f32 {
    let mut sum = [0f32; LANES];
    let (query_chunks, query_tail) = query.as_chunks::<LANES>();
    let (row_chunks, row_tail) = row.as_chunks::<LANES>();
    for (q, r) in query_chunks.iter().zip(row_chunks) {
        for lane in 0..LANES {
            sum[lane] += q[lane] * r[lane];
        }
    }
    pairwise(&sum) + query_tail.iter().zip(row_tail).map(|(x, y)| x * y).sum::<f32>()
}

/// The sum of the lanes, halving the width at each step.
#[inline(always)]
fn pairwise(lanes: &[f32; LANES]) -> f32 {
    let half: [f32; 8] = std::array::from_fn(|lane| lanes[lane] + lanes[lane + 8]);
    let quarter: [f32; 4] = std::array::from_fn(|lane| half[lane] + half[lane + 4]);
    (quarter[0] + quarter[2]) + (quarter[1] + quarter[3])
}

/// The loaded model: tokenizer and encoder weights. Immutable and shareable
/// across threads; one call embeds a batch of texts.
pub struct Embedder {
    tokenizer: Tokenizer,
    encoder: Encoder,
    /// The threads the arithmetic runs on, one per core this process may use;
    /// batches of a large embedding run side by side here. When candle's
    /// steps do use rayon (`RAYON_NUM_THREADS` above 1), inside this pool
    /// they run where they are called instead of each of the ~50 steps of a
    /// forward pass waiting for another pool's thread to wake; a call
    /// crosses threads once.
    pool: rayon::ThreadPool,
    /// Packs messages that wait together into one pass (`combine`).
    combiner: super::combine::Combiner,
}

impl Embedder {
    /// Loads `tokenizer.json` and `model.safetensors` from `dir`. Checksums
    /// are the caller's business (`fetch::verify`).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|err| anyhow::anyhow!("{err}"))
            .with_context(|| format!("reading {}", tokenizer_path.display()))?;
        // The shipped tokenizer pads every text to 128 and cuts there; batches
        // are packed without padding (`Encoder::forward`), and texts may be as
        // long as the model was trained on.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..TruncationParams::default() }))
            .map_err(|err| anyhow::anyhow!("{err}"))
            .context("setting the tokenizer's truncation")?;
        let weights_path = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        let weights = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let encoder =
            Encoder::load(weights).with_context(|| format!("loading the weights in {}", weights_path.display()))?;
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|index| format!("faqbot-model-{index}"))
            .build()
            .context("starting the model's threads")?;
        Ok(Self { tokenizer, encoder, pool, combiner: super::combine::Combiner::new(threads) })
    }

    /// The vector of one text.
    pub fn embed(&self, text: &str) -> anyhow::Result<Vector> {
        let mut vectors = self.embed_batch(&[text])?;
        vectors.pop().context("the model returned no vector")
    }

    /// The vectors of many texts, in the order given. Batches of up to
    /// `BATCH` texts run in parallel, one per core.
    pub fn embed_batch(&self, texts: &[&str]) -> anyhow::Result<Vec<Vector>> {
        self.pool.install(|| {
            let encodings = texts
                .par_iter()
                .map(|text| self.tokenizer.encode(*text, true))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| anyhow::anyhow!("{err}"))
                .context("tokenizing")?;
            let ids: Vec<&[u32]> = encodings.iter().map(|encoding| encoding.get_ids()).collect();
            self.embed_ids(&ids)
        })
    }

    /// The vectors of a message's few texts, in order: in one pass, shared
    /// with whatever other messages are waiting for the model meanwhile.
    pub fn embed_combined(&self, texts: &[&str]) -> anyhow::Result<Vec<Vector>> {
        let ids = texts.iter().map(|text| self.token_ids(text)).collect::<anyhow::Result<Vec<_>>>()?;
        // Checked here, so that a text the pass would refuse fails its own
        // message only, not the others packed with it.
        if let Some(bad) = ids.iter().find(|ids| ids.is_empty() || ids.len() > MAX_TOKENS) {
            bail!("a text has {} word pieces; between 1 and {MAX_TOKENS} are allowed", bad.len());
        }
        self.combiner.run(ids, |batch| self.pool.install(|| self.encoder.forward(batch)))
    }

    /// The word-piece ids of one text, with [CLS] and [SEP].
    pub fn token_ids(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        let encoding =
            self.tokenizer.encode(text, true).map_err(|err| anyhow::anyhow!("{err}")).context("tokenizing")?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Runs in `pool`, one batch per thread at a time.
    fn embed_ids(&self, ids: &[&[u32]]) -> anyhow::Result<Vec<Vector>> {
        let batches =
            ids.par_chunks(BATCH).map(|batch| self.encoder.forward(batch)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(batches.into_iter().flatten().collect())
    }
}

/// BERT's encoder with mean pooling and L2 normalisation.
struct Encoder {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
}

struct Layer {
    /// Query, key and value in one matrix: one matrix product instead of three.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Encoder {
    fn load(weights: VarBuilder) -> anyhow::Result<Self> {
        let embeddings = weights.pp("embeddings");
        let layers = (0..LAYERS)
            .map(|number| Layer::load(weights.pp(format!("encoder.layer.{number}"))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            words: candle_nn::embedding(VOCABULARY, HIDDEN, embeddings.pp("word_embeddings"))?,
            positions: candle_nn::embedding(POSITIONS, HIDDEN, embeddings.pp("position_embeddings"))?,
            token_types: candle_nn::embedding(2, HIDDEN, embeddings.pp("token_type_embeddings"))?,
            embeddings_norm: candle_nn::layer_norm(HIDDEN, LAYER_NORM_EPS, embeddings.pp("LayerNorm"))?,
            layers,
        })
    }

    /// One batch of token-id sequences → one normalised vector each.
    ///
    /// The sequences are laid end to end, not padded to the longest: every
    /// step but attention works token by token, so it runs once over the
    /// real tokens only, and attention runs on each sequence's own rows.
    /// Padding had made a message of several sentences (embedded whole and
    /// sentence by sentence) cost up to half as much again.
    fn forward(&self, batch: &[&[u32]]) -> anyhow::Result<Vec<Vector>> {
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut spans = Vec::with_capacity(batch.len());
        for sequence in batch {
            if sequence.is_empty() || sequence.len() > MAX_TOKENS {
                bail!("a text has {} word pieces; between 1 and {MAX_TOKENS} are allowed", sequence.len());
            }
            spans.push(Span { start: ids.len(), length: sequence.len() });
            ids.extend_from_slice(sequence);
            positions.extend(0..sequence.len() as u32);
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let device = Device::Cpu;
        let tokens = ids.len();
        let ids = Tensor::from_vec(ids, tokens, &device)?;
        let positions = Tensor::from_vec(positions, tokens, &device)?;
        let types = ids.zeros_like()?;

        let mut hidden = self.words.forward(&ids)?;
        hidden = (hidden + self.positions.forward(&positions)?)?;
        hidden = (hidden + self.token_types.forward(&types)?)?;
        hidden = self.embeddings_norm.forward(&hidden)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &spans)?;
        }

        // Mean over each sequence's tokens, then unit length.
        let hidden = hidden.to_vec2::<f32>()?;
        let mut vectors = Vec::with_capacity(spans.len());
        for span in &spans {
            let rows = hidden.get(span.start..span.start + span.length).context("a sequence beyond the batch")?;
            let mut mean = vec![0f32; HIDDEN];
            for row in rows {
                for (sum, value) in mean.iter_mut().zip(row) {
                    *sum += value;
                }
            }
            let norm = mean.iter().map(|value| value * value).sum::<f32>().sqrt().max(1e-12);
            for value in &mut mean {
                *value /= norm;
            }
            vectors.push(mean);
        }
        Ok(vectors)
    }
}

/// Where one sequence's tokens lie in a packed batch.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    length: usize,
}

impl Layer {
    fn load(weights: VarBuilder) -> anyhow::Result<Self> {
        let attention = weights.pp("attention");
        let part = |name: &str| -> anyhow::Result<(Tensor, Tensor)> {
            let vb = attention.pp("self").pp(name);
            Ok((vb.get((HIDDEN, HIDDEN), "weight")?, vb.get(HIDDEN, "bias")?))
        };
        let (q, qb) = part("query")?;
        let (k, kb) = part("key")?;
        let (v, vb) = part("value")?;
        let qkv = Linear::new(Tensor::cat(&[q, k, v], 0)?, Tensor::cat(&[qb, kb, vb], 0)?)?;
        Ok(Self {
            qkv,
            attention_out: Linear::load(HIDDEN, HIDDEN, attention.pp("output.dense"))?,
            attention_norm: candle_nn::layer_norm(HIDDEN, LAYER_NORM_EPS, attention.pp("output.LayerNorm"))?,
            intermediate: Linear::load(HIDDEN, INTERMEDIATE, weights.pp("intermediate.dense"))?,
            output: Linear::load(INTERMEDIATE, HIDDEN, weights.pp("output.dense"))?,
            output_norm: candle_nn::layer_norm(HIDDEN, LAYER_NORM_EPS, weights.pp("output.LayerNorm"))?,
        })
    }

    fn forward(&self, hidden: &Tensor, spans: &[Span]) -> anyhow::Result<Tensor> {
        let qkv = self.qkv.forward(hidden)?;
        let scale = 1.0 / (HEAD_SIZE as f64).sqrt();
        let mut contexts = Vec::with_capacity(spans.len());
        for span in spans {
            let heads = qkv
                .narrow(0, span.start, span.length)?
                .reshape((span.length, 3, HEADS, HEAD_SIZE))?
                .permute((1, 2, 0, 3))?;
            let (q, k, v) = (heads.get(0)?.contiguous()?, heads.get(1)?.contiguous()?, heads.get(2)?.contiguous()?);
            let probabilities = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? * scale)?)?;
            contexts.push(probabilities.matmul(&v)?.transpose(0, 1)?.reshape((span.length, HIDDEN))?);
        }
        let context = Tensor::cat(&contexts, 0)?;
        let attended = self.attention_norm.forward(&(self.attention_out.forward(&context)? + hidden)?)?;
        let intermediate = gelu(&self.intermediate.forward(&attended)?)?;
        Ok(self.output_norm.forward(&(self.output.forward(&intermediate)? + &attended)?)?)
    }
}

/// A dense layer whose weight is kept transposed, `inputs × outputs` and
/// contiguous. Multiplying by candle's transposed view of the stored matrix
/// made the matrix product copy the weight into its own layout every time:
/// that copy was a third of a forward pass.
struct Linear {
    transposed: Tensor,
    bias: Tensor,
}

impl Linear {
    fn new(weight: Tensor, bias: Tensor) -> anyhow::Result<Self> {
        Ok(Self { transposed: weight.t()?.contiguous()?, bias })
    }

    fn load(inputs: usize, outputs: usize, weights: VarBuilder) -> anyhow::Result<Self> {
        Self::new(weights.get((outputs, inputs), "weight")?, weights.get(outputs, "bias")?)
    }

    fn forward(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        Ok(x.matmul(&self.transposed)?.broadcast_add(&self.bias)?)
    }
}

/// GELU as BERT was trained with it, x/2 · (1 + erf(x/√2)). candle's version
/// calls libm's scalar erf for every element, a tenth of a forward pass; this
/// loop vectorises.
fn gelu(x: &Tensor) -> anyhow::Result<Tensor> {
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    for value in &mut values {
        *value = 0.5 * *value * (1.0 + erf(*value * std::f32::consts::FRAC_1_SQRT_2));
    }
    Ok(Tensor::from_vec(values, x.shape(), x.device())?)
}

/// erf as a rational function of x² on [-4, 4] (beyond, erf is ±1 to 2e-8):
/// the approximation Eigen and TensorFlow use, within 7e-8 of the true value.
fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_473_9e-2];
    let x = x.clamp(-4.0, 4.0);
    let square = x * x;
    let p = P.iter().fold(0.0, |sum, c| sum * square + c);
    let q = Q.iter().fold(0.0, |sum, c| sum * square + c);
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // erf at these points, rounded to what an f32 holds.
        for (x, expected) in [(0.0, 0.0), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (2.0, 0.995_322_3)] {
            assert!((erf(x) - expected).abs() < 2e-7, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + expected).abs() < 2e-7, "erf(-{x}) = {}", erf(-x));
        }
        // Beyond the fitted range the input is clamped, and erf is 1 there to
        // within 2e-8.
        assert!((erf(9.0) - 1.0).abs() < 2e-7, "erf(9) = {}", erf(9.0));
        assert!((erf(-9.0) + 1.0).abs() < 2e-7, "erf(-9) = {}", erf(-9.0));
    }

    #[test]
    fn the_scan_agrees_with_a_plain_dot_product() {
        let query: Vec<f32> = (0..DIMENSIONS).map(|i| (i as f32 * 0.37).sin()).collect();
        let rows: Vec<f32> = (0..DIMENSIONS * 5).map(|i| (i as f32 * 0.11).cos()).collect();
        let scanned = cosines(&query, &rows);
        assert_eq!(scanned.len(), 5);
        for (score, row) in scanned.iter().zip(rows.chunks_exact(DIMENSIONS)) {
            let plain: f32 = query.iter().zip(row).map(|(a, b)| a * b).sum();
            assert!((score - plain).abs() < 1e-3, "{score} against {plain}");
        }
    }

    #[test]
    fn many_queries_get_exactly_what_one_at_a_time_gets() {
        // More queries than one block, and a last block that is not full.
        let queries: Vec<Vec<f32>> = (0..QUERY_BLOCK + 3)
            .map(|q| (0..DIMENSIONS).map(|i| ((q * 7 + i) as f32 * 0.37).sin()).collect())
            .collect();
        let rows: Vec<f32> = (0..DIMENSIONS * 9).map(|i| (i as f32 * 0.11).cos()).collect();
        let refs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let many = cosines_many(&refs, &rows);
        assert_eq!(many.len(), queries.len());
        for (query, row) in queries.iter().zip(&many) {
            let one = cosines(query, &rows);
            assert_eq!(row.len(), 9);
            // Bit for bit: the self-test must see the scores a reply sees.
            assert!(row.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()), "{row:?} against {one:?}");
            // A row in a group of `ROWS_AT_ONCE` and the same row alone agree too.
            let alone = cosines(query, rows.get(..DIMENSIONS).unwrap_or_default());
            assert_eq!(alone.first().map(|a| a.to_bits()), row.first().map(|a| a.to_bits()));
        }
    }
}
