//! `ticket-bridge`: the local runner (`serve`) and admin commands.

mod admin;
mod connect;
mod local;
mod mappings;
mod rules;
mod serve;
mod serve_sync;
mod sync_cmd;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default listen address of `serve` (and default server of the client commands).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Parser)]
#[command(
    name = "ticket-bridge",
    version,
    about = "Turns tasks and alerts into ITSM tickets and follows them until closed"
)]
struct Cli {
    /// Configuration file (TOML). Without one, `serve` runs the built-in sandbox ITSM.
    #[arg(long, global = true, env = "TICKET_BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the local SQLite database and secrets file.
    #[arg(long, global = true, env = "TICKET_BRIDGE_DATA_DIR", default_value = ".ticket-bridge")]
    data_dir: PathBuf,
    /// Log format: text (coloured only when stderr is a terminal) or json.
    #[arg(
        long,
        global = true,
        env = "TICKET_BRIDGE_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run intake, ticket creation, polling and token upkeep in one process.
    Serve {
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
    /// Check a connection: reachability, TLS, credentials, permissions.
    Check { connection: String },
    /// Operate on tasks of a running `serve` (or any Ticket Bridge API).
    Tasks {
        #[command(subcommand)]
        cmd: admin::TasksCmd,
        #[arg(long, env = "TICKET_BRIDGE_URL", default_value = concat!("http://", "127.0.0.1:8080"), global = true)]
        server: String,
        /// API key (admin scope for list/replay).
        #[arg(long, env = "TICKET_BRIDGE_API_KEY", global = true)]
        api_key: Option<String>,
    },
    /// Act as a technician on the built-in sandbox ITSM of a running `serve`.
    Sandbox {
        #[command(subcommand)]
        cmd: admin::SandboxCmd,
        #[arg(long, env = "TICKET_BRIDGE_URL", default_value = concat!("http://", "127.0.0.1:8080"), global = true)]
        server: String,
    },
    /// Organization, contact and contract mapping (preview, apply, match, exclude, include, list).
    Mappings(mappings::MappingsArgs),
    /// Print the SHA-256 to put in [[auth.api_keys]] for an API key read from stdin.
    HashKey,
    /// Authorize an OAuth connection (NinjaOne) in the browser and store its refresh token.
    Connect(connect::ConnectArgs),
    /// Routing and ticket rules ([[rules]] in the configuration).
    Rules {
        #[command(subcommand)]
        cmd: rules::RulesCmd,
    },
}

/// How `--log-format` writes log lines to stderr.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TICKET_BRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_ansi(false).init(),
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve { listen } => serve::run(cli.config.as_deref(), &cli.data_dir, listen).await,
        Command::Check { connection } => admin::check(cli.config.as_deref(), &cli.data_dir, &connection).await,
        Command::Tasks { cmd, server, api_key } => admin::tasks(&server, api_key.as_deref(), cmd).await,
        Command::Sandbox { cmd, server } => admin::sandbox(&server, cmd).await,
        Command::Mappings(args) => mappings::run(cli.config.as_deref(), &cli.data_dir, args).await,
        Command::Connect(args) => connect::run(cli.config.as_deref(), &cli.data_dir, args).await,
        Command::HashKey => {
            let mut key = String::new();
            std::io::stdin().read_line(&mut key)?;
            println!("{}", bridge::engine::api::hash_key(key.trim()));
            Ok(())
        }
        Command::Rules { cmd } => rules::run(cli.config.as_deref(), cmd),
    }
}
