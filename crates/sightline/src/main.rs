//! The `sightline` binary: the command line, the wiring of configured components into running
//! pipelines, the admin server and the process's life cycle. Components live in their own
//! crates; this crate only connects them.

mod admin;
mod app;
mod components;
mod health_check;
mod lint;
mod malloc;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Sightline: an OpenTelemetry agent and gateway that stamps every span, metric and log with
/// its owning team and fans it out to every backend.
#[derive(Parser, Debug)]
#[command(name = "sightline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent (the default when no command is given).
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = app::DEFAULT_CONFIG)]
        config: String,
    },
    /// Check a configuration file and the catalogs it refers to; exit 0 when valid, otherwise
    /// print every error and exit 1.
    Validate {
        /// Configuration file.
        #[arg(long, short, default_value = app::DEFAULT_CONFIG)]
        config: String,
    },
    /// Probe a health endpoint (for a container's HEALTHCHECK, where the image has no shell or
    /// curl): exit 0 when `GET URL` answers 200, 1 otherwise.
    Healthcheck {
        /// An http:// URL (the health_check extension's endpoint and path).
        #[arg(long, default_value = "http://127.0.0.1:13133/")]
        url: String,
    },
    /// The ownership catalog's tools.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Subcommand, Debug)]
enum CatalogCommand {
    /// Check catalog files (native YAML and Backstage) as the agent loads them: errors (exit 1)
    /// and warnings (teams without contact or on-call, rules that never apply or match no
    /// known service); exit 0 when there is no error, 2 on a usage error.
    Lint {
        /// Catalog files or directories (native YAML, Backstage descriptors by their
        /// apiVersion, catalog-info.yaml files below a directory).
        paths: Vec<std::path::PathBuf>,
        /// Lint the catalogs of this configuration's ownership processors instead.
        #[arg(long, short)]
        config: Option<String>,
        /// Service names known to exist, one per line: a rule whose service.name pattern
        /// matches none of them (nor a catalog service) is a warning.
        #[arg(long)]
        services: Option<std::path::PathBuf>,
        /// The default team of the ownership processor.
        #[arg(long, default_value = "unowned")]
        default_team: String,
        #[arg(long, value_enum, default_value = "text")]
        format: lint::Format,
    },
}

fn main() -> ExitCode {
    // Before any thread exists: see ADR 14.
    let malloc = malloc::tune();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run { config: app::DEFAULT_CONFIG.to_string() }) {
        Command::Healthcheck { url } => match healthcheck(&url) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("healthcheck {url}: {e}");
                ExitCode::from(1)
            }
        },
        Command::Catalog { command: CatalogCommand::Lint { paths, config, services, default_team, format } } => {
            lint::run(&paths, config.as_deref(), services.as_deref(), &default_team, format)
        }
        Command::Validate { config } => match app::validate(&config) {
            Ok(_) => {
                println!("{config}: valid");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{config}: {e}");
                }
                eprintln!("{config}: {} error(s)", errors.len());
                ExitCode::from(1)
            }
        },
        Command::Run { config } => {
            let validated = match app::validate(&config) {
                Ok(v) => v,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{config}: {e}");
                    }
                    eprintln!("{config}: invalid configuration, not starting");
                    if config == app::DEFAULT_CONFIG && !std::path::Path::new(&config).exists() {
                        eprintln!(
                            "hint: the default configuration and its catalogs are read from the repository's config/ \
                             directory; run from the repository root, or pass --config FILE"
                        );
                    }
                    return ExitCode::from(1);
                }
            };
            app::init_logging(&validated.config.service.telemetry.logs);
            tracing::debug!(
                ?malloc,
                mmap_threshold = malloc::MMAP_THRESHOLD,
                trim_threshold = malloc::TRIM_THRESHOLD,
                "malloc tuning"
            );
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let res = rt.block_on(app::run(validated));
            // `app::run` has drained and closed every component within
            // `service.shutdown_timeout`. A blocking call still running now (a Kafka metadata
            // request to brokers that do not answer, up to 10 s) must not hold the exit: the
            // runtime's drop would wait for it without bound.
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
            match res {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "sightline stopped");
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `GET url` over HTTP/1.0 with a 3 s timeout; Ok when the status is 200.
fn healthcheck(url: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let timeout = std::time::Duration::from_secs(3);
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {authority}"))?;
    let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = conn.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status == "200" { Ok(()) } else { Err(format!("status {}", if status.is_empty() { "none" } else { status })) }
}
