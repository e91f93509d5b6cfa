use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use casehub::cli::{Cli, Command};
use casehub::{Application, Settings, auth::Auth, telemetry};
use clap::Parser;

/// mimalloc rather than the system allocator: a request allocates many small, short-lived
/// objects (JSON values, snapshots, events), which glibc's malloc spent a quarter of the intake
/// profile on (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        // A client of a running server: it needs no settings of its own.
        Command::Tail(args) => exit(casehub::tail::run(args).await),
        Command::Token {
            reviewer,
            rooms,
            ttl,
        } => with_settings(cli.config.as_deref(), |settings| {
            println!("{}", mint(&settings, &reviewer, &rooms, ttl));
            ExitCode::SUCCESS
        }),
        Command::Serve => match load(cli.config.as_deref()) {
            Ok(settings) => exit(serve(settings).await),
            Err(code) => code,
        },
    }
}

fn load(file: Option<&Path>) -> Result<Settings, ExitCode> {
    Settings::load(file).map_err(|e| {
        eprintln!("casehub: {e}");
        ExitCode::from(2)
    })
}

fn with_settings(file: Option<&Path>, f: impl FnOnce(Settings) -> ExitCode) -> ExitCode {
    load(file).map_or_else(|code| code, f)
}

fn mint(settings: &Settings, reviewer: &str, rooms: &[String], ttl: Duration) -> String {
    Auth::new(settings).mint_reviewer(reviewer, rooms, ttl)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    telemetry::init(&settings.log);
    if settings.uses_dev_secrets() {
        tracing::warn!(
            "development keys or secrets are in use; set real ones before exposing casehub"
        );
    }
    Application::build(settings)
        .await?
        .run_until(casehub::shutdown_signal())
        .await
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("casehub: {e:#}");
            ExitCode::from(1)
        }
    }
}
