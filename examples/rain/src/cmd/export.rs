//! `rain export`: a model file written by `rain train` as an ONNX file of
//! the whole model (see `tapegrad::nn::io::to_onnx`) and as a safetensors
//! file of its weights, named as PyTorch names them (see
//! `tapegrad::nn::io::to_safetensors`).

use clap::Args as ClapArgs;
use rain::error::RainError;
use rain::output::Staged;
use std::path::{Path, PathBuf};

/// The text after the options in `rain export --help`.
pub const HELP: &str = "\
ONNX: the whole model, standardisation included: input x of shape [N, features]
(raw values, one example per row), output probability [N, 1] (a softmax model:
[N, classes]), float32 or float64 as the model was trained; opset 17. Built-in
and formula activations are written in ONNX operators; a Rust closure cannot be.

safetensors: the tensors are named as torch.nn.Sequential(Linear, activation,
Linear, ...) names its parameters: 0.weight, 0.bias, 2.weight, 2.bias, ...; the
metadata holds the architecture, the activations and the standardisation
((x - mean) / std per feature).

Both files are made before either is written: an error in either writes neither. scripts/check_export.py loads them into
onnxruntime and PyTorch and compares their predictions with rain predict's.

Examples:
  rain export --model rain-out/model.json --onnx model.onnx
  rain export --model rain-out/model.json --onnx model.onnx --safetensors model.safetensors";

/// The arguments of `rain export`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A model file written by `rain train`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// The ONNX file to write (its folder must exist).
    #[arg(long, value_name = "FILE", required_unless_present = "safetensors")]
    pub onnx: Option<PathBuf>,
    /// The safetensors file to write (its folder must exist).
    #[arg(long, value_name = "FILE")]
    pub safetensors: Option<PathBuf>,
}

/// Checks that `out` can be written: its folder exists, and it is not the
/// model file.
fn check_target(what: &'static str, out: &Path, model: &Path) -> Result<(), RainError> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(RainError::bad(what, out.display(), "its folder does not exist"));
    }
    if let (Ok(a), Ok(b)) = (out.canonicalize(), model.canonicalize())
        && a == b
    {
        return Err(RainError::bad(what, out.display(), "is the --model file"));
    }
    Ok(())
}

/// Runs `rain export`.
pub fn run(args: &Args) -> Result<(), RainError> {
    let targets: Vec<(&'static str, &PathBuf)> =
        [("--onnx", &args.onnx), ("--safetensors", &args.safetensors)]
            .into_iter()
            .filter_map(|(what, p)| p.as_ref().map(|p| (what, p)))
            .collect();
    for (what, out) in &targets {
        check_target(what, out, &args.model)?;
    }
    if let (Some(a), Some(b)) = (&args.onnx, &args.safetensors)
        && (a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y))
    {
        return Err(RainError::bad("--onnx", a.display(), "is also the --safetensors file"));
    }
    let saved = tapegrad::nn::io::load::<f64>(&args.model)?;
    let std = saved.standardization.as_ref();
    let f32_model = if saved.dtype == "f32" { Some(saved.model.cast::<f32>()?) } else { None };
    // Every file's bytes first: an activation without an ONNX form writes
    // nothing at all.
    let mut files = Vec::new();
    for (what, out) in targets {
        let bytes = match (what, &f32_model) {
            ("--onnx", Some(m)) => tapegrad::nn::io::to_onnx(m, std)?,
            ("--onnx", None) => tapegrad::nn::io::to_onnx(&saved.model, std)?,
            (_, Some(m)) => tapegrad::nn::io::to_safetensors(m, std)?,
            (_, None) => tapegrad::nn::io::to_safetensors(&saved.model, std)?,
        };
        files.push((out, bytes));
    }
    let mut staged = Vec::new();
    for (out, bytes) in &files {
        let s = Staged::file(out)?;
        s.write("", bytes)?;
        staged.push(s);
    }
    for s in staged {
        s.commit()?;
    }
    for (out, _) in &files {
        eprintln!("wrote {} ({} layers, {})", out.display(), saved.model.num_layers(), saved.dtype);
    }
    Ok(())
}
