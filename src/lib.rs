//! faqbot answers questions about ketamine therapy for PTSD from a curated,
//! validated FAQ knowledge base. See ARCHITECTURE.md for the map.

pub mod cli;
pub mod knowledge;
pub mod render;
pub mod text;
