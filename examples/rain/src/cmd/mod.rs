//! The subcommands, one file each, and what they share. Each file holds
//! its arguments and its `run`; `main.rs` only dispatches to them.

pub mod activation;
pub mod check;
pub mod classes;
pub mod common;
pub mod compare;
pub mod export;
pub mod predict;
pub mod train;
