//! The embedding model reproduces the reference vectors computed
//! independently for its files (`reference.jsonl` beside the model).

use std::path::PathBuf;

use faqbot::model::{DIMENSIONS, Embedder, cosine};
use serde::Deserialize;

/// The model directory: `FAQBOT_MODEL`, relative to the repository root,
/// or the shared copy CI provides beside the checkout.
fn model_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("FAQBOT_MODEL") {
        Some(dir) => root.join(dir),
        None => root.join("../shared/models/all-MiniLM-L6-v2"),
    }
}

#[derive(Deserialize)]
struct Reference {
    text: String,
    token_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn references() -> Vec<Reference> {
    let path = model_dir().join("reference.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("a reference"))
        .collect()
}

#[test]
fn every_reference_vector_is_reproduced_one_by_one_and_in_a_batch() {
    let embedder = Embedder::load(&model_dir()).expect("the model loads");
    let references = references();
    assert_eq!(references.len(), 9);
    let texts: Vec<&str> = references.iter().map(|reference| reference.text.as_str()).collect();
    let batch = embedder.embed_batch(&texts).expect("a batch embeds");
    for (reference, batched) in references.iter().zip(&batch) {
        assert_eq!(embedder.token_ids(&reference.text).expect("tokens"), reference.token_ids, "{:?}", reference.text);
        let single = embedder.embed(&reference.text).expect("one text embeds");
        assert_eq!(single.len(), DIMENSIONS);
        let norm: f32 = reference.embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        let alone = cosine(&single, &reference.embedding) / norm;
        let packed = cosine(batched, &reference.embedding) / norm;
        assert!(alone >= 0.9999, "{:?}: cosine {alone}", reference.text);
        assert!(packed >= 0.9999, "{:?} in a batch: cosine {packed}", reference.text);
    }
}

#[test]
fn similar_sentences_are_close_and_unrelated_ones_are_not() {
    let embedder = Embedder::load(&model_dir()).expect("the model loads");
    let vectors = embedder
        .embed_batch(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The weather in Paris is sunny today.",
        ])
        .expect("embeds");
    let close = cosine(&vectors[0], &vectors[1]);
    assert!((close - 0.7553).abs() < 0.001, "cosine {close}");
    assert!(cosine(&vectors[0], &vectors[2]) < 0.2);
}

#[test]
fn a_text_longer_than_the_model_takes_is_cut_not_refused() {
    let embedder = Embedder::load(&model_dir()).expect("the model loads");
    let long = "ketamine infusion for ptsd ".repeat(400);
    let ids = embedder.token_ids(&long).expect("tokens");
    assert_eq!(ids.len(), faqbot::model::MAX_TOKENS);
    let vector = embedder.embed(&long).expect("embeds");
    let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
}

#[test]
fn a_text_packed_with_others_gets_bit_for_bit_its_vector_alone() {
    // Messages that wait together share a pass (`model::combine`); none may
    // get a different vector, and so a different answer, for it.
    let embedder = Embedder::load(&model_dir()).expect("the model loads");
    let owned: Vec<String> = (0..20)
        .map(|n| format!("message {n}: is ketamine {} safe for me?", "really and truly ".repeat(n % 6)))
        .chain(["hi".to_owned(), "my dad is a vet. his therapist mentioned ketamine. does it help?".to_owned()])
        .collect();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let packed = embedder.embed_combined(&texts).expect("a packed pass");
    assert_eq!(packed.len(), texts.len());
    for (text, packed) in texts.iter().zip(&packed) {
        assert_eq!(&embedder.embed(text).expect("alone"), packed, "{text:?}");
    }
}
