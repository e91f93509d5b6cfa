use std::process::ExitCode;

use casehub::cli::{Cli, Command};
use casehub::{Application, Settings, auth::Auth, telemetry};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("casehub: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Token {
            reviewer,
            rooms,
            ttl,
        } => {
            println!(
                "{}",
                Auth::new(&settings).mint_reviewer(&reviewer, &rooms, ttl)
            );
            ExitCode::SUCCESS
        }
        Command::Serve => {
            telemetry::init(&settings.log);
            if settings.uses_dev_secrets() {
                tracing::warn!(
                    "development keys or secrets are in use; set real ones before exposing casehub"
                );
            }
            let app = match Application::build(settings).await {
                Ok(app) => app,
                Err(e) => {
                    eprintln!("casehub: {e:#}");
                    return ExitCode::from(1);
                }
            };
            match app.run_until(casehub::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("casehub: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
