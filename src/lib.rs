//! faqbot answers questions about ketamine therapy for PTSD from a curated,
//! validated FAQ knowledge base. See ARCHITECTURE.md for the map.

pub mod admin;
pub mod bench;
pub mod chat;
pub mod cli;
pub mod decide;
pub mod engine;
pub mod eval;
pub mod eval_safety;
pub mod export;
pub mod import;
pub mod knowledge;
pub mod model;
pub mod question;
pub mod reply;
pub mod report;
pub mod responder;
pub mod safety;
pub mod search;
pub mod self_test;
pub mod store;
pub mod telegram;
pub mod text;
