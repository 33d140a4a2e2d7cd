//! The `ringway` command: run, check, publish, demo, proxy, ring, reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ringway::config::{self, Config};
use ringway::proxy::Engine;

/// Ringway: an HTTP load balancer and reverse proxy.
#[derive(Parser, Debug)]
#[command(name = "ringway", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the balancer with a configuration file.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "ringway.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file: a summary and exit 0, or every error and exit 1.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "ringway.toml")]
        config: PathBuf,
    },
    /// Run the embedded demo: three rooms services behind the balancer.
    Demo {
        /// Port of the demo's listener on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Port of the status page and admin API on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 9090)]
        admin_port: u16,
    },
    /// A load balancer in one line, no config file: one listener, one route, one pool.
    Proxy {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: SocketAddr,
        /// Servers, comma-separated host:port.
        #[arg(long, visible_alias = "backends", value_delimiter = ',', required = true)]
        to: Vec<String>,
        /// Balancing algorithm.
        #[arg(long, value_enum, default_value_t = BalanceArg::RoundRobin)]
        balance: BalanceArg,
        /// Worker threads (default: one per CPU core).
        #[arg(long)]
        threads: Option<usize>,
        /// Write the access log to standard output (off by default, as in a benchmark).
        #[arg(long)]
        access_log: bool,
        /// Terminate TLS with this PEM certificate chain (with --key).
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// The PEM private key of --cert.
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
    },
    /// Cluster mode: validate a configuration file as `check` does, then publish it to the
    /// fleet through etcd (its `[cluster]` section names the endpoints and prefix).
    Publish {
        /// Configuration file.
        #[arg(short, long, default_value = "ringway.toml")]
        config: PathBuf,
    },
    /// Consistent-hash planner: routing tables and what moves when servers change.
    Ring(ringway::ring_cmd::RingArgs),
    /// Ask a running instance to reload its configuration (same as SIGHUP).
    Reload {
        /// The instance's admin address, e.g. http://127.0.0.1:9090 [default: `[admin] listen`
        /// of the configuration file].
        #[arg(long, value_name = "URL")]
        admin: Option<String>,
        /// The instance's configuration file, for its admin address and token variable
        /// [default: ringway.toml when --admin is not given].
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
#[value(rename_all = "snake_case")]
enum BalanceArg {
    RoundRobin,
    LeastRequests,
    RandomTwo,
    ConsistentHash,
    Maglev,
}

/// Logs go to standard error, coloured only when it is a terminal (and `NO_COLOR` is not set):
/// a file or a pipe gets plain text.
fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .init();
}

use ringway::cli::print_config_errors as print_errors;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Check { config } => match config::load_with_warnings(&config) {
            Ok((c, tls_warnings)) => {
                for w in &tls_warnings {
                    eprintln!("{}:{}:{}: warning: {}", w.file, w.line, w.col, w.message);
                }
                let (errors, warnings) = ringway::proxy::state::unsupported(&c);
                for w in &warnings {
                    eprintln!("{}: warning: {w}", config.display());
                }
                if !errors.is_empty() {
                    for e in &errors {
                        eprintln!("{}: {e}", config.display());
                    }
                    return ExitCode::FAILURE;
                }
                println!(
                    "{}: {}",
                    config.display(),
                    config::summary_at(&c, Some(jiff::Timestamp::now()))
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                print_errors(&errors);
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match config::load_with_warnings(&config) {
            Ok((c, warnings)) => {
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                let token_present = std::env::var_os(&c.admin.token_env).is_some();
                if let Some(e) = config::check_admin_token(&c, token_present) {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::FAILURE;
                }
                serve(c, None, Some(config), true)
            }
            Err(errors) => {
                print_errors(&errors);
                ExitCode::FAILURE
            }
        },
        Command::Proxy {
            listen,
            to,
            balance,
            threads,
            access_log,
            cert,
            key,
        } => {
            let tls = cert.zip(key).map(|(cert, key)| config::CertPair { cert, key });
            if let Some(pair) = &tls
                && let Err(e) = ringway::cli::check_cert_pair(pair)
            {
                eprintln!("ringway: {e}");
                return ExitCode::FAILURE;
            }
            serve(
                ringway::cli::proxy_config(listen, &to, balance.into(), access_log, tls),
                threads,
                None,
                false,
            )
        }
        Command::Demo { port, admin_port } => ringway::cli::demo(port, admin_port),
        Command::Publish { config } => ringway::cluster::publish::run(&config),
        Command::Ring(args) => ringway::ring_cmd::run(&args, &ringway::cli::pool_source),
        Command::Reload { admin, config } => ringway::cli::send_reload(admin.as_deref(), config.as_deref()),
    }
}

impl From<BalanceArg> for config::Balance {
    fn from(b: BalanceArg) -> config::Balance {
        match b {
            BalanceArg::RoundRobin => config::Balance::RoundRobin,
            BalanceArg::LeastRequests => config::Balance::LeastRequests,
            BalanceArg::RandomTwo => config::Balance::RandomTwo,
            BalanceArg::ConsistentHash => {
                config::Balance::ConsistentHash(ringway::cli::default_hash_settings())
            }
            BalanceArg::Maglev => config::Balance::Maglev(ringway::cli::default_hash_settings()),
        }
    }
}

/// Runs until SIGTERM or SIGINT; SIGHUP reloads `config_path` if there is one.
fn serve(config: Config, threads: Option<usize>, config_path: Option<PathBuf>, admin: bool) -> ExitCode {
    // Caught before the listeners open: a SIGTERM (or SIGHUP) must never meet the default action.
    let signals = match ringway::cli::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway: cannot catch signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls: Vec<String> = config
        .listeners
        .iter()
        .filter(|l| l.tls.is_some())
        .map(|l| l.name.clone())
        .collect();
    // Cluster mode chooses the config to start with: the fleet's, the cache's or the file's.
    let mut boot = match (&config.cluster, &config_path) {
        (Some(cluster), Some(path)) => {
            let booted = ringway::cluster::Settings::of(cluster, path, &ringway::admin::hostname())
                .and_then(|settings| ringway::cluster::boot(settings, config.clone(), path));
            match booted {
                Ok(b) => Some(b),
                Err(e) => {
                    eprintln!("ringway: cannot start cluster mode: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let config = boot.as_ref().map_or(config, |b| b.config.clone());
    let started = match Engine::start(config, threads, config_path.clone()) {
        Err(e) => match boot.as_mut().and_then(|b| b.fall_back(&e.to_string())) {
            Some(local) => Engine::start(local, threads, config_path),
            None => Err(e),
        },
        ok => ok,
    };
    let engine = match started {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ringway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, addr) in engine.listeners() {
        let scheme = if tls.contains(&name) { "https" } else { "http" };
        tracing::info!("listener `{name}` on {scheme}://{addr}");
    }
    let engine = std::sync::Arc::new(engine);
    if let Some(boot) = boot {
        boot.join(engine.clone());
    }
    if admin && let Err(e) = ringway::admin::start(engine.clone()) {
        eprintln!("ringway: cannot start the admin interface: {e}");
        engine.shutdown();
        engine.wait();
        return ExitCode::FAILURE;
    }
    match signals.wait(&engine) {
        Ok(()) => {
            if let Some(cluster) = engine.cluster.get() {
                cluster.leave();
            }
            engine.wait();
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringway: {e}");
            ExitCode::FAILURE
        }
    }
}

// hyper frees and reallocates its read buffers on every request; mimalloc serves that pattern
// from thread-local free lists where glibc's malloc consolidates and trims.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
