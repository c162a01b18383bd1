//! The nn crate's integration tests, in one binary (each test binary links
//! the crates and instantiates their generic code again). The allocation
//! count stays a binary of its own: its counting allocator would see the
//! other tests' threads.

mod activations;
mod formula_input;
mod guide_formulas;
mod heads;
mod hostile_model_files;
mod model_files;
mod training;
