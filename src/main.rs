use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
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
