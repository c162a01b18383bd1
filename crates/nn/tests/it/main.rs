//! The nn crate's integration tests, in one binary (each test binary links
//! the crates and instantiates their generic code again). The allocation
//! count's allocator serves the whole binary; it counts per thread.

mod activations;
mod allocations;
mod formula_input;
mod guide_formulas;
mod heads;
mod hostile_model_files;
mod model_files;
mod replay;
mod training;
