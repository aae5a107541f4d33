use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Under Lambda the runtime API is set: serve invocations instead of the CLI.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return match keywarden::lambda::run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("keywarden: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = keywarden::cli::Cli::parse();
    keywarden::logging::init();
    match keywarden::cli::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("keywarden: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
