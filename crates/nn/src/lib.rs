//! The guide's L-layer binary classifier on tapegrad, and the training
//! toolkit around it: activations (built-in, formula or closure, none with
//! a derivative written), losses, initialisers, optimizers, mini-batch
//! training, metrics, model files, and checkers for hand-written backprop.
//!
//! Train the guide's network in a few lines:
//!
//! ```
//! use tapegrad_nn::{fit, Adam, Architecture, Init, Model, TrainConfig, metrics};
//! use tapegrad_tensor::ndarray::array;
//!
//! // Features are rows, examples are columns, as in the guide.
//! let x = array![[-1.0, -0.8, 0.9, 1.2, -0.9, 1.1], [0.2, -0.1, 0.3, -0.2, 0.0, 0.1]];
//! let y = array![[0.0, 0.0, 1.0, 1.0, 0.0, 1.0]];
//! let mut model = Model::<f64>::new(&Architecture::guide(2, &[5, 3]), Init::HeNormal, 1).unwrap();
//! let cfg = TrainConfig { epochs: 200, batch_size: Some(4), ..Default::default() };
//! let history = fit(&mut model, &mut Adam::new(0.01).unwrap(), x.view(), y.view(), &cfg, |_| {}).unwrap();
//! assert!(history.epoch_costs.last() < history.epoch_costs.first());
//!
//! let p = model.predict_proba(x.view()).unwrap();
//! let labels: Vec<bool> = y.iter().map(|&v| v == 1.0).collect();
//! assert_eq!(metrics::roc_auc(&labels, p.as_slice().unwrap()), Some(1.0));
//! ```
#![warn(missing_docs)]

pub mod activation;
pub mod check;
mod error;
mod formula;
mod head;
mod init;
pub mod io;
mod loss;
pub mod metrics;
mod model;
pub mod optim;
mod train;

pub use activation::{Activation, BUILTIN_NAMES};
pub use error::NnError;
pub use formula::{Formula, FormulaError};
pub use head::{one_hot, Head};
pub use init::Init;
pub use io::{SavedModel, Standardization};
pub use loss::Loss;
pub use model::{Architecture, Dropout, Forward, Layer, LayerSpec, Model, Params};
pub use optim::{Adam, AdamW, GradientDescent, Momentum, Nesterov, Optimizer, RmsProp, Schedule};
pub use train::{cost_of, fit, EarlyStopping, History, Progress, TrainConfig};
