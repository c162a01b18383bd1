//! `rain`: the guide's rain task on real weather data, as a command-line
//! program. `cargo run --release -p rain` trains with good defaults.
//!
//! This file is the command line: the subcommands and `main`, which runs
//! one and turns its error into one line on stderr and exit status 2. Each
//! subcommand lives in its own file under `cmd/`.

mod cmd;
mod plots;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The guide's deep network on hourly NYC weather: will it rain this hour?
#[derive(Parser, Debug)]
#[command(name = "rain", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: cmd::train::Args,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load, clean and standardise the data, check gradients, train, and
    /// report test metrics beside two baselines (the default command).
    /// With --classes: no rain / light / heavy, with a softmax head.
    Train(cmd::train::Args),
    /// Apply a saved model (and its standardisation) to a CSV file.
    Predict(cmd::predict::Args),
    /// Verify gradients: autodiff vs the guide's formulas vs finite
    /// differences, per parameter.
    Check(cmd::check::Args),
    /// Plot activations (names or formulas in x) with their derivatives,
    /// computed by autodiff: one with f, f' and f'', several on one chart.
    Activation(cmd::activation::Args),
}

fn main() -> ExitCode {
    rain::end_quietly_on_closed_pipe();
    let cli = match Cli::try_parse() {
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
            // One line: clap's first line names the argument and the problem.
            let text = e.render().to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments").trim_end());
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        None => cmd::train::run(&cli.train),
        Some(Command::Train(a)) => cmd::train::run(&a),
        Some(Command::Predict(a)) => cmd::predict::run(&a),
        Some(Command::Check(a)) => cmd::check::run(&a),
        Some(Command::Activation(a)) => cmd::activation::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.to_string().lines().collect::<Vec<_>>().join(" | "));
            ExitCode::from(2)
        }
    }
}
