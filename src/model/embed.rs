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
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use rayon::prelude::*;
use tokenizers::{Tokenizer, TruncationParams};

/// Dimensions of a sentence vector.
pub const DIMENSIONS: usize = 384;
/// The model was trained on at most this many word pieces; more are cut.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass when embedding many: padding grows with the
/// longest text of a batch, so texts are sorted by length first.
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
    // Eight running sums that the compiler keeps in one vector register: a
    // single running sum makes every addition wait for the one before, which
    // made the dense scan several times slower.
    let (a_lanes, b_lanes) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_lanes.remainder().iter().zip(b_lanes.remainder()).map(|(x, y)| x * y).sum();
    let mut sums = [0f32; LANES];
    for (x, y) in a_lanes.zip(b_lanes) {
        for ((sum, x), y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    sums.iter().sum::<f32>() + tail
}

const LANES: usize = 8;

/// The loaded model: tokenizer and encoder weights. Immutable and shareable
/// across threads; one call embeds a batch of texts.
pub struct Embedder {
    tokenizer: Tokenizer,
    encoder: Encoder,
    /// The threads the arithmetic runs on, one per core this process may use.
    /// candle's matrix products, softmax and layer norms (and the tokenizer's
    /// batches) hand their work to a rayon pool: called from a thread outside
    /// any pool, each of the ~50 such steps of a forward pass waits for
    /// another thread to wake, which under load cost more than the
    /// arithmetic. Inside this pool they run where they are called; a call
    /// crosses threads once.
    pool: rayon::ThreadPool,
}

impl Embedder {
    /// Loads `tokenizer.json` and `model.safetensors` from `dir`. Checksums
    /// are the caller's business (`fetch::verify`).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|err| anyhow::anyhow!("{err}"))
            .with_context(|| format!("reading {}", tokenizer_path.display()))?;
        // The shipped tokenizer pads every text to 128 and cuts there; we pad
        // per batch ourselves and allow what the model was trained on.
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
        Ok(Self { tokenizer, encoder, pool })
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

    /// The word-piece ids of one text, with [CLS] and [SEP]; for tests.
    pub fn token_ids(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        let encoding =
            self.tokenizer.encode(text, true).map_err(|err| anyhow::anyhow!("{err}")).context("tokenizing")?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Runs in `pool`: batches are sorted by length, so padding stays short.
    fn embed_ids(&self, ids: &[&[u32]]) -> anyhow::Result<Vec<Vector>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&index| ids[index].len());
        let chunks: Vec<&[usize]> = order.chunks(BATCH).collect();
        let batches = chunks
            .par_iter()
            .map(|chunk| {
                let batch: Vec<&[u32]> = chunk.iter().map(|&index| ids[index]).collect();
                self.encoder.forward(&batch)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut vectors: Vec<Vector> = vec![Vec::new(); ids.len()];
        for (chunk, batch) in chunks.iter().zip(batches) {
            for (&index, vector) in chunk.iter().zip(batch) {
                vectors[index] = vector;
            }
        }
        Ok(vectors)
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
    fn forward(&self, batch: &[&[u32]]) -> anyhow::Result<Vec<Vector>> {
        let rows = batch.len();
        let width = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        if rows == 0 {
            return Ok(Vec::new());
        }
        if width == 0 || width > MAX_TOKENS {
            bail!("a text has {width} word pieces; between 1 and {MAX_TOKENS} are allowed");
        }
        let mut ids = vec![0u32; rows * width];
        let mut mask = vec![0f32; rows * width];
        for (row, sequence) in batch.iter().enumerate() {
            ids[row * width..row * width + sequence.len()].copy_from_slice(sequence);
            mask[row * width..row * width + sequence.len()].fill(1.0);
        }
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (rows, width), &device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &device)?;
        let positions = Tensor::arange(0u32, width as u32, &device)?.unsqueeze(0)?.broadcast_as((rows, width))?;
        let types = ids.zeros_like()?;

        let mut hidden = self.words.forward(&ids)?;
        hidden = (hidden + self.positions.forward(&positions)?)?;
        hidden = (hidden + self.token_types.forward(&types)?)?;
        hidden = self.embeddings_norm.forward(&hidden)?;

        // Padded positions get a large negative score so softmax ignores them.
        let bias = ((mask.clone() - 1.0)? * 1e4)?.reshape((rows, 1, 1, width))?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &bias, rows, width)?;
        }

        // Mean over the real tokens, then unit length.
        let mask = mask.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let normalised = mean.broadcast_div(&norm)?;
        Ok(normalised.to_vec2::<f32>()?)
    }
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
        let qkv = Linear::new(Tensor::cat(&[q, k, v], 0)?, Some(Tensor::cat(&[qb, kb, vb], 0)?));
        Ok(Self {
            qkv,
            attention_out: candle_nn::linear(HIDDEN, HIDDEN, attention.pp("output.dense"))?,
            attention_norm: candle_nn::layer_norm(HIDDEN, LAYER_NORM_EPS, attention.pp("output.LayerNorm"))?,
            intermediate: candle_nn::linear(HIDDEN, INTERMEDIATE, weights.pp("intermediate.dense"))?,
            output: candle_nn::linear(INTERMEDIATE, HIDDEN, weights.pp("output.dense"))?,
            output_norm: candle_nn::layer_norm(HIDDEN, LAYER_NORM_EPS, weights.pp("output.LayerNorm"))?,
        })
    }

    fn forward(&self, hidden: &Tensor, bias: &Tensor, rows: usize, width: usize) -> anyhow::Result<Tensor> {
        let qkv = self.qkv.forward(hidden)?.reshape((rows, width, 3, HEADS, HEAD_SIZE))?.permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
        let scale = 1.0 / (HEAD_SIZE as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(bias)?;
        let probabilities = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probabilities.matmul(&v)?.transpose(1, 2)?.reshape((rows, width, HIDDEN))?;
        let attended = self.attention_norm.forward(&(self.attention_out.forward(&context)? + hidden)?)?;
        let intermediate = self.intermediate.forward(&attended)?.gelu_erf()?;
        Ok(self.output_norm.forward(&(self.output.forward(&intermediate)? + &attended)?)?)
    }
}
