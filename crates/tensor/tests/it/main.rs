//! The tensor crate's integration tests, in one binary (each test binary
//! links the crate and instantiates its generic code again).

mod engine;
mod higher_order;
mod reference_values;
