//! `ringway ring`: the consistent-hash planner on the command line (DESIGN.md section 6).
//!
//! Owns: the command's flags, checking their combination, choosing the member set (from
//! `--servers` or from a pool of the config file, through the loader the caller passes in),
//! printing the planner's tables as text or JSON, and the exit code (0 done, 1 config file
//! problem, 2 usage error).
//! Must not touch: config parsing itself (the `load_pool` callback does it) or the ring
//! arithmetic (the pure `balance::planner` does it).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;

use crate::balance::planner;
use crate::balance::ring::DEFAULT_VNODES;
use crate::balance::{HashFunction, Member};

/// Largest `--vnodes` accepted.
pub const MAX_CLI_VNODES: u32 = 10_000;
/// Largest ring the command prints (points = vnodes × total weight).
pub const MAX_CLI_POINTS: u64 = 4_000_000;

const USAGE: &str = "usage: ringway ring (--servers A,B,... | -c FILE --pool NAME) [--vnodes N] \
[--hash xxh3|sha1-28] [--add A,B,...] [--remove A,...] [--summary] [--format table|json]";

/// Flags of `ringway ring`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RingArgs {
    /// Servers on the ring, comma-separated, weight 1 each.
    #[arg(
        long,
        value_name = "A,B,...",
        value_delimiter = ',',
        conflicts_with = "config"
    )]
    pub servers: Vec<String>,
    /// Config file holding the pool (with --pool).
    #[arg(short = 'c', long = "config", value_name = "FILE", requires = "pool")]
    pub config: Option<PathBuf>,
    /// Hashed pool of the config file to plan.
    #[arg(long, value_name = "NAME", requires = "config")]
    pub pool: Option<String>,
    /// Points per unit of weight [default: 160, or the pool's].
    #[arg(long, value_name = "N")]
    pub vnodes: Option<u32>,
    /// Hash function, xxh3 or sha1-28 [default: xxh3, or the pool's].
    #[arg(long, value_name = "xxh3|sha1-28", value_parser = HashFunction::parse)]
    pub hash: Option<HashFunction>,
    /// Servers to add, comma-separated: prints the new ring and what moves.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub add: Vec<String>,
    /// Servers to remove, comma-separated: prints the new ring and what moves.
    #[arg(long, value_name = "A,...", value_delimiter = ',')]
    pub remove: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RingFormat::Table)]
    pub format: RingFormat,
    /// Only the shares and the migration, without the routing tables.
    #[arg(long)]
    pub summary: bool,
}

/// Output format of `ringway ring`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingFormat {
    /// Text tables.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

/// A hashed pool as the config loader hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSource {
    /// The pool's servers (name and weight).
    pub members: Vec<Member>,
    /// The pool's `vnodes`.
    pub vnodes: u32,
    /// The pool's `hash`.
    pub hash: HashFunction,
}

/// Why the command could not produce its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    /// Bad flags or a bad combination of them: exit code 2.
    Usage(String),
    /// The config file or pool could not be read: exit code 1.
    Config(String),
}

/// Runs `ringway ring`: prints the plan on stdout, or an error on stderr; never panics.
pub fn run(args: &RingArgs, load_pool: &dyn Fn(&Path, &str) -> Result<PoolSource, String>) -> ExitCode {
    match render(args, load_pool) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                // `ringway ring ... | head` closes the pipe early; that is not a failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the plan: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(RingError::Usage(msg)) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(RingError::Config(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The text `run` prints, or why there is none.
pub fn render(
    args: &RingArgs,
    load_pool: &dyn Fn(&Path, &str) -> Result<PoolSource, String>,
) -> Result<String, RingError> {
    let usage = |m: String| RingError::Usage(m);
    let (members, vnodes, hash) = match (&args.config, args.servers.is_empty()) {
        (Some(_), false) => {
            return Err(usage("give either --servers or -c/--config, not both".into()));
        }
        (None, true) => {
            return Err(usage("give --servers A,B,... or -c FILE --pool NAME".into()));
        }
        (None, false) => {
            if args.pool.is_some() {
                return Err(usage("--pool needs -c/--config".into()));
            }
            let members = names(&args.servers, "--servers")?;
            (
                members,
                args.vnodes.unwrap_or(DEFAULT_VNODES),
                args.hash.unwrap_or_default(),
            )
        }
        (Some(path), true) => {
            let Some(pool) = &args.pool else {
                return Err(usage("-c/--config needs --pool NAME".into()));
            };
            let source = load_pool(path, pool).map_err(RingError::Config)?;
            (
                source.members,
                args.vnodes.unwrap_or(source.vnodes),
                args.hash.unwrap_or(source.hash),
            )
        }
    };
    if !(1..=MAX_CLI_VNODES).contains(&vnodes) {
        return Err(usage(format!(
            "--vnodes must be between 1 and {MAX_CLI_VNODES}, not {vnodes}"
        )));
    }
    let add = names(&args.add, "--add")?;
    let remove: Vec<String> = names(&args.remove, "--remove")?
        .into_iter()
        .map(|m| m.name)
        .collect();
    let largest = [&members, &add]
        .iter()
        .map(|set| set.iter().map(|m| u64::from(m.weight.clamp(1, 256))).sum::<u64>())
        .sum::<u64>()
        * u64::from(vnodes);
    if largest > MAX_CLI_POINTS {
        return Err(usage(format!(
            "the ring would have up to {largest} points; at most {MAX_CLI_POINTS} are printed (lower --vnodes)"
        )));
    }
    let plan = planner::plan(&members, &add, &remove, vnodes, hash).map_err(usage)?;
    match args.format {
        RingFormat::Table if args.summary => Ok(planner::render_summary(&plan)),
        RingFormat::Table => Ok(planner::render_text(&plan)),
        RingFormat::Json if args.summary => summary_json(&plan).map_err(RingError::Config),
        RingFormat::Json => planner::render_json(&plan)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(RingError::Config),
    }
}

/// A ring without its routing tables.
#[derive(serde::Serialize)]
struct RingSummary<'a> {
    hash: &'a str,
    vnodes: u32,
    max_hash: u64,
    servers: &'a [planner::ServerTotal],
}

/// A plan without the rings' routing tables.
#[derive(serde::Serialize)]
struct PlanSummary<'a> {
    before: RingSummary<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<RingSummary<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    migration: Option<&'a planner::Migration>,
}

/// The plan as JSON without the rings' `partitions` and `simplified` tables (counts stay exact
/// integers: serialized straight to text, never through `f64`).
fn summary_json(plan: &planner::Plan) -> Result<String, String> {
    fn ring(t: &planner::RingTable) -> RingSummary<'_> {
        RingSummary {
            hash: t.hash,
            vnodes: t.vnodes,
            max_hash: t.max_hash,
            servers: &t.servers,
        }
    }
    let summary = PlanSummary {
        before: ring(&plan.before),
        after: plan.after.as_ref().map(ring),
        migration: plan.migration.as_ref(),
    };
    serde_json::to_string_pretty(&summary)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| format!("cannot render the plan as JSON: {e}"))
}

/// Members of weight 1 from a comma-separated flag; empty names are refused.
fn names(list: &[String], flag: &str) -> Result<Vec<Member>, RingError> {
    list.iter()
        .map(|n| {
            let name = n.trim();
            if name.is_empty() {
                Err(RingError::Usage(format!("{flag} has an empty server name")))
            } else {
                Ok(Member {
                    name: name.to_string(),
                    weight: 1,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        ring: RingArgs,
    }

    fn parse(args: &[&str]) -> Result<RingArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("ring").chain(args.iter().copied())).map(|c| c.ring)
    }

    fn no_config(_: &Path, _: &str) -> Result<PoolSource, String> {
        Err("no config in this test".into())
    }

    fn cache_pool(path: &Path, pool: &str) -> Result<PoolSource, String> {
        if path != Path::new("ringway.toml") || pool != "cache" {
            return Err(format!("{}: no pool {pool:?}", path.display()));
        }
        Ok(PoolSource {
            members: vec![
                Member {
                    name: "cache-a:11211".into(),
                    weight: 2,
                },
                Member {
                    name: "cache-b:11211".into(),
                    weight: 1,
                },
            ],
            vnodes: 7,
            hash: HashFunction::Sha1_28,
        })
    }

    fn output(args: &[&str]) -> Result<String, RingError> {
        let args = parse(args).expect("valid flags");
        render(&args, &no_config)
    }

    #[test]
    fn classic_demonstration() {
        let out = output(&[
            "--servers",
            "server-a,server-b",
            "--vnodes",
            "5",
            "--hash",
            "sha1-28",
        ])
        .expect("plan");
        assert!(
            out.contains("   23746828 --> server-a-4 (6848918 hashes)\n"),
            "{out}"
        );
        assert!(out.contains("  148456820 --> server-a-0 ("), "{out}");
        assert!(
            out.contains("   23746828 --> server-a (37156400 hashes)\n"),
            "{out}"
        );
        // The first row of each table is the wrap-around partition at 0, and the last point's
        // own row counts only its hashes up to the end of the space.
        assert!(
            out.contains("\nRouting table:\n          0 --> server-b-1 (23746828 hashes)\n"),
            "{out}"
        );
        assert!(
            out.contains("\n  262844523 --> server-b-1 (5590933 hashes)\n\nSimplified"),
            "{out}"
        );
        assert!(
            out.contains("\nSimplified routing table:\n          0 --> server-b (23746828 hashes)\n"),
            "{out}"
        );
        assert!(
            out.contains("\n  233554857 --> server-b (34880599 hashes)\n\nShares:"),
            "{out}"
        );
    }

    #[test]
    fn add_prints_the_migration() {
        let out = output(&[
            "--servers",
            "server-a,server-b",
            "--vnodes",
            "5",
            "--hash",
            "sha1-28",
            "--add",
            "server-c",
        ])
        .expect("plan");
        assert!(out.contains("Migration:"), "{out}");
        assert!(out.contains("server-a --> server-c"), "{out}");
        assert!(
            out.contains("Nothing moves between two servers that stay."),
            "{out}"
        );
    }

    #[test]
    fn json_output_from_a_config_pool() {
        let args = parse(&[
            "-c",
            "ringway.toml",
            "--pool",
            "cache",
            "--remove",
            "cache-b:11211",
            "--format",
            "json",
        ])
        .expect("valid flags");
        let out = render(&args, &cache_pool).expect("plan");
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(v["before"]["vnodes"], 7);
        assert_eq!(v["before"]["hash"], "sha1-28");
        // 21 points and the wrap-around row at 0, as in the text.
        assert_eq!(v["before"]["partitions"].as_array().map(Vec::len), Some(22));
        assert_eq!(v["before"]["partitions"][0]["start"], 0);
        assert_eq!(v["before"]["simplified"][0]["start"], 0);
        assert_eq!(v["migration"]["removed"][0], "cache-b:11211");
        assert_eq!(v["after"]["servers"][0]["share"], 1.0);
        // Flags override the pool's settings.
        let args = parse(&[
            "-c",
            "ringway.toml",
            "--pool",
            "cache",
            "--vnodes",
            "3",
            "--hash",
            "xxh3",
        ])
        .expect("valid flags");
        let out = render(&args, &cache_pool).expect("plan");
        assert!(
            out.starts_with("2 servers, 3 points per unit of weight, 9 points, hash xxh3"),
            "{out}"
        );
    }

    #[test]
    fn summary_leaves_out_the_tables() {
        let full = output(&["--servers", "a,b", "--vnodes", "5", "--add", "c"]).expect("plan");
        let summary =
            output(&["--servers", "a,b", "--vnodes", "5", "--add", "c", "--summary"]).expect("plan");
        assert!(full.contains("Routing table:"), "{full}");
        assert!(!summary.contains("Routing table:"), "{summary}");
        assert!(!summary.contains("Simplified routing table:"), "{summary}");
        assert!(!summary.contains(" --> a-"), "{summary}");
        assert_eq!(summary.matches("Shares:").count(), 2, "{summary}");
        assert!(summary.contains("Migration:"), "{summary}");
        assert!(
            summary.contains("Nothing moves between two servers that stay."),
            "{summary}"
        );
        // Every line of the summary is in the full output.
        assert!(summary.lines().all(|l| full.lines().any(|f| f == l)), "{summary}");

        // One server owns all 2^64 hashes of xxh3: the count must stay an exact integer.
        let json = output(&["--servers", "a", "--summary", "--format", "json"]).expect("plan");
        assert!(json.contains("\"hashes\": 18446744073709551616"), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert!(v["before"].get("partitions").is_none(), "{v}");
        assert!(v["before"].get("simplified").is_none(), "{v}");
        assert_eq!(v["before"]["servers"][0]["share"], 1.0);
        let json = output(&[
            "--servers",
            "a,b",
            "--remove",
            "b",
            "--summary",
            "--format",
            "json",
        ])
        .expect("plan");
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["migration"]["removed"][0], "b");
        assert!(v["after"].get("partitions").is_none(), "{v}");
    }

    #[test]
    fn an_unknown_remove_lists_the_servers() {
        match output(&["--servers", "a,b", "--remove", "c"]) {
            Err(RingError::Usage(m)) => assert!(m.contains("(a, b)"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_errors_exit_one() {
        let args = parse(&["-c", "other.toml", "--pool", "cache"]).expect("valid flags");
        assert!(matches!(render(&args, &cache_pool), Err(RingError::Config(_))));
        assert_eq!(run(&args, &cache_pool), ExitCode::FAILURE);
    }

    #[test]
    fn bad_combinations_are_usage_errors() {
        for bad in [
            &[][..],
            &["--servers", "a,b", "--vnodes", "0"],
            &["--servers", "a,b", "--vnodes", "10001"],
            &["--servers", "a,b", "--remove", "c"],
            &["--servers", "a,b", "--add", "b"],
            &["--servers", "a,b", "--add", "c,c"],
            &["--servers", "a,a"],
            &["--servers", "a,,b"],
            &["--servers", "a", "--remove", "a"],
        ] {
            let args = parse(bad).expect("flags parse");
            assert!(
                matches!(render(&args, &no_config), Err(RingError::Usage(_))),
                "{bad:?}"
            );
            assert_eq!(run(&args, &no_config), ExitCode::from(2), "{bad:?}");
        }
    }

    #[test]
    fn huge_rings_are_refused() {
        // 401 servers × 10,000 points is over the limit of what the command prints.
        let many: Vec<String> = (0..401).map(|i| format!("s{i}")).collect();
        let list = many.join(",");
        let args = parse(&["--servers", &list, "--vnodes", "10000"]).expect("flags parse");
        assert!(matches!(render(&args, &no_config), Err(RingError::Usage(_))));
        let args = parse(&["--servers", &list, "--vnodes", "20"]).expect("flags parse");
        assert!(render(&args, &no_config).is_ok_and(|out| out.contains("Shares:")));
    }

    #[test]
    fn hand_built_args_are_checked_too() {
        let both = RingArgs {
            servers: vec!["a".into()],
            config: Some("x.toml".into()),
            pool: Some("p".into()),
            ..RingArgs::default()
        };
        assert!(matches!(render(&both, &cache_pool), Err(RingError::Usage(_))));
        let config_without_pool = RingArgs {
            config: Some("x.toml".into()),
            ..RingArgs::default()
        };
        assert!(matches!(
            render(&config_without_pool, &cache_pool),
            Err(RingError::Usage(_))
        ));
        let pool_without_config = RingArgs {
            servers: vec!["a".into()],
            pool: Some("p".into()),
            ..RingArgs::default()
        };
        assert!(matches!(
            render(&pool_without_config, &cache_pool),
            Err(RingError::Usage(_))
        ));
    }

    #[test]
    fn clap_rejects_bad_flags_with_exit_code_two() {
        for bad in [
            &["--servers", "a", "--hash", "md5"][..],
            &["--servers", "a", "--vnodes", "-3"],
            &["--servers", "a", "--format", "yaml"],
            &["--servers", "a", "-c", "x.toml", "--pool", "p"],
            &["-c", "x.toml"],
            &["--pool", "p"],
            &["--bogus"],
        ] {
            let err = parse(bad).expect_err("should not parse");
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
