//! `rain`: the guide's rain task on real weather data, as a command-line
//! program. `cargo run --release -p rain` trains with good defaults.
//!
//! This file is the command line: the subcommands and `main`, which runs
//! one and turns its error into one line on stderr and exit status 2 (1
//! for a failed gradient check). Each subcommand lives in its own file
//! under `cmd/`.

mod cmd;
mod plots;
mod report;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  rain                                     train with the defaults (same as `rain train`)
  rain train --layers 20,7,5 --activation tanh --optimizer adam
  rain train --classes                     no rain / light / heavy, softmax head
  rain check --layers 8 --l2 0.5           verify gradients (exit status 1 if they disagree)
  rain predict --model rain-out/model.json --data new.csv --out predictions.csv
  rain export --model rain-out/model.json --onnx model.onnx --safetensors m.safetensors
  rain compare --activations relu,tanh,swish --seeds 5
  rain activation gelu \"x * tanh(softplus(x))\"

Exit status: 0 success, 1 gradients disagree (check, train --strict-check),
2 bad input, 130/143 interrupted (SIGINT/SIGTERM; nothing is left half-written).";

/// The guide's deep network on hourly NYC weather: will it rain this hour?
#[derive(Parser, Debug)]
#[command(name = "rain", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load, clean and standardise the data, check gradients, train, and
    /// report test metrics beside two baselines (the default command).
    /// With --classes: no rain / light / heavy, with a softmax head.
    #[command(after_help = format!("{}\n\n{}", cmd::common::activations_help(), cmd::train::EXAMPLES))]
    Train(cmd::train::Args),
    /// Apply a saved model (and its standardisation) to a CSV file.
    #[command(after_help = cmd::predict::HELP)]
    Predict(cmd::predict::Args),
    /// Verify gradients: autodiff vs the guide's formulas vs finite
    /// differences, per parameter (exit status 1 if they disagree).
    #[command(after_help = format!("{}\n\n{}", cmd::common::activations_help(), cmd::check::EXAMPLES))]
    Check(cmd::check::Args),
    /// Compare activations or optimizers: each trained with the same data,
    /// network and N seeds; one table of test figures (mean +- sd).
    #[command(after_help = format!("{}\n\n{}", cmd::common::activations_help(), cmd::compare::EXAMPLES))]
    Compare(cmd::compare::Args),
    /// Export a saved model: the whole model as ONNX, its weights as
    /// safetensors (named as PyTorch names them), or both.
    #[command(after_help = cmd::export::HELP)]
    Export(cmd::export::Args),
    /// Plot activations (names or formulas in x) with their derivatives,
    /// computed by autodiff: one with f, f' and f'', several on one chart.
    #[command(after_help = format!("{}\n\n{}", cmd::common::activations_help(), cmd::activation::EXAMPLES))]
    Activation(cmd::activation::Args),
}

/// The arguments with `train` inserted when no subcommand is named: bare
/// `rain` and `rain --lr 0.1` train; `rain --help` and `rain --version`
/// stay the program's.
fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).map(str::to_string);
    let insert = match first.as_deref() {
        None => true,
        Some("-h" | "--help" | "-V" | "--version") => false,
        Some(a) => a.starts_with('-'),
    };
    if insert {
        args.insert(1, "train".into());
    }
    args
}

/// clap's error as one line: its message and the lines that carry
/// information (the missing arguments, the accepted values, a "did you
/// mean"), without the usage and the pointer to --help.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.to_string());
        }
    }
    let mut out = parts.first().cloned().unwrap_or_else(|| "error: bad arguments".into());
    if out.ends_with(':') {
        // "the following required arguments were not provided:" + names.
        out = format!("{out} {}", parts[1..].join(", "));
    } else if parts.len() > 1 {
        out = format!("{out}; {}", parts[1..].join("; "));
    }
    out
}

fn main() -> ExitCode {
    rain::end_quietly_on_closed_pipe();
    rain::output::handle_interrupts();
    let args = with_default_subcommand(std::env::args_os().collect());
    let parsed = Cli::command().try_get_matches_from(args).and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("{}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Train(a) => cmd::train::run(&a),
        Command::Predict(a) => cmd::predict::run(&a),
        Command::Check(a) => cmd::check::run(&a),
        Command::Compare(a) => cmd::compare::run(&a),
        Command::Export(a) => cmd::export::run(&a),
        Command::Activation(a) => cmd::activation::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.to_string().lines().collect::<Vec<_>>().join(" | "));
            ExitCode::from(e.exit_code())
        }
    }
}
