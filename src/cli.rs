//! The command line: `casehub [serve]`, `casehub token …`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// casehub: a realtime support hub.
#[derive(Debug, Parser)]
#[command(name = "casehub", version, about)]
pub struct Cli {
    /// A settings file layered over the defaults (environment variables CASEHUB__SECTION__KEY win).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; none means `serve`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Mint a reviewer token (HS256 JWT signed with auth.reviewer_secret).
    Token {
        /// Reviewer email (the token's subject).
        #[arg(long)]
        reviewer: String,
        /// Rooms the token may enter, comma-separated; "*" for all.
        #[arg(long, value_delimiter = ',', default_value = "support-review")]
        rooms: Vec<String>,
        /// Lifetime, e.g. 8h, 30m.
        #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Follow /ops/stream live: a refreshing table on a terminal, plain lines otherwise.
    Tail(crate::tail::TailArgs),
}
