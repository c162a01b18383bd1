//! `rain export`: a model file written by `rain train` as a safetensors
//! file of its weights, named as PyTorch names them (see
//! `tapegrad::nn::io::to_safetensors`).

use clap::Args as ClapArgs;
use rain::error::RainError;
use rain::output::Staged;
use std::path::PathBuf;

/// The text after the options in `rain export --help`.
pub const HELP: &str = "\
The tensors are named as torch.nn.Sequential(Linear, activation, Linear, ...) names
its parameters: 0.weight, 0.bias, 2.weight, 2.bias, ...; the metadata holds the
architecture, the activations and the standardisation ((x - mean) / std per feature).
scripts/check_export.py loads the file into PyTorch and compares its predictions
with rain predict's.

Examples:
  rain export --model rain-out/model.json --safetensors model.safetensors";

/// The arguments of `rain export`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A model file written by `rain train`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// The safetensors file to write (its folder must exist).
    #[arg(long, value_name = "FILE")]
    pub safetensors: PathBuf,
}

/// Runs `rain export`.
pub fn run(args: &Args) -> Result<(), RainError> {
    let out = &args.safetensors;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Err(RainError::bad("--safetensors", out.display(), "its folder does not exist"));
    }
    if let (Ok(a), Ok(b)) = (out.canonicalize(), args.model.canonicalize())
        && a == b
    {
        return Err(RainError::bad("--safetensors", out.display(), "is the --model file"));
    }
    let saved = tapegrad::nn::io::load::<f64>(&args.model)?;
    let std = saved.standardization.as_ref();
    let bytes = if saved.dtype == "f32" {
        tapegrad::nn::io::to_safetensors(&saved.model.cast::<f32>()?, std)?
    } else {
        tapegrad::nn::io::to_safetensors(&saved.model, std)?
    };
    let staged = Staged::file(out)?;
    staged.write("", &bytes)?;
    staged.commit()?;
    eprintln!("wrote {} ({} layers, {})", out.display(), saved.model.num_layers(), saved.dtype);
    Ok(())
}
