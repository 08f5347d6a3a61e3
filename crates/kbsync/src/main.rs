//! The `kbsync` binary: command line ([`Cli`]), configuration ([`config`]) and wiring
//! ([`wiring`], which builds the running parts from the configuration). The only crate that
//! names concrete implementations.
//!
//! The `demo` cargo feature (on by default) adds `serve --demo`: an in-process emulated OneDrive
//! and Google Drive, and sample documents. A production build can leave it out (`--no-default-features`).

mod backup;
mod config;
#[cfg(feature = "demo")]
mod demo;
mod operator;
mod password;
mod secret;
mod wiring;

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kbsync_core::{Clock, OsRandom, Role, SystemClock};
use kbsync_server::service::users;
use kbsync_store::{PostgresStore, RotationReport, SqliteStore, Store, TokenCipher, rotate_secrets};
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{FileConfig, Flags, LogFormat, Settings};
use crate::operator::Failure;
use crate::password::PasswordArgs;

/// The exit statuses of `kbsync sync` (also in the README).
const SYNC_EXIT_STATUS: &str = "\
Exit status:
  0  the run completed
  1  an error before the run could start (settings, database, a knowledge base that cannot sync)
  2  a bad command line
  3  the run failed (also: a source's access was revoked, or the file limit was reached)
  4  the run completed, but some files could not be brought in (the next run retries them)
  5  the knowledge base is not connected, or its connection needs re-authorisation
  6  no knowledge base has that id or name
  7  the knowledge base is being synced elsewhere (a server or another kbsync sync) and --wait was not given
  8  the run was cancelled (Ctrl-C, or a cancel through the web UI or API)";

#[derive(Parser)]
#[command(
    name = "kbsync",
    version,
    about = "Keeps knowledge bases in sync with cloud drives"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        #[command(flatten)]
        common: CommonArgs,
        /// Seed a demo account and a knowledge base of sample documents, so that a fresh
        /// machine has something to log in to and search.
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Back up a SQLite deployment into a directory, also while a server runs.
    ///
    /// The backup holds the database as of one moment (SQLite `VACUUM INTO`), the stored files
    /// (copied before and after the database, so that every file it references is there) and
    /// the generated secret key when the data directory has one. The backup is a directory
    /// outside the data directory (created when missing) holding kbsync.sqlite, blobs/ and
    /// secret_key; backing up into an earlier backup copies only new files. For PostgreSQL use
    /// pg_dump plus a copy of the data directory's blobs/.
    Backup {
        /// The backup directory.
        backup: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Restore a backup made by `kbsync backup` into an empty or new data directory.
    ///
    /// Refuses a data directory that holds anything. Start the server on it afterwards, with the
    /// same settings.
    Restore {
        /// The backup directory.
        backup: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Re-encrypt every stored secret under the current KBSYNC_SECRET_KEY.
    ///
    /// Connection tokens and pending sign-in verifiers written under KBSYNC_SECRET_KEY_PREVIOUS
    /// are decrypted with it and encrypted again. Row by row, safe while servers run and to run
    /// again; prints how many rows are still under another key (0 when
    /// KBSYNC_SECRET_KEY_PREVIOUS can be dropped).
    RotateKey {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Sync one knowledge base now, in the foreground, showing its progress.
    ///
    /// Runs against the configured database (the same settings as `serve`), taking the knowledge
    /// base's lease like every run, so a server on the same database never syncs it at the same
    /// time. Shows a progress bar on a terminal and one line per event otherwise. Ctrl-C cancels
    /// the run (no cursor moves; a second Ctrl-C leaves at once).
    #[command(after_help = SYNC_EXIT_STATUS)]
    Sync {
        /// The knowledge base: its id, or its exact name.
        kb: String,
        /// When it is being synced elsewhere, wait for that run to end and sync then (instead of
        /// exiting with 7).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// List the knowledge bases: sync state, last run, next run, connection.
    Status {
        /// A JSON array for scripts instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Search the knowledge bases, as the operator (all of them) or as one user.
    Search {
        /// The words to look for.
        query: String,
        /// Only this knowledge base (its id or exact name).
        #[arg(long, value_name = "ID|NAME")]
        kb: Option<String>,
        /// How many hits to show (1 to 100) [default: 10]
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Search with what this user may read instead of everything.
        #[arg(long = "as", value_name = "EMAIL")]
        as_email: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Serve the text-extraction worker protocol on stdin/stdout (the server starts these itself
    /// when KBSYNC_EXTRACT_ISOLATION=process).
    #[command(hide = true)]
    ExtractWorker {
        /// This process's address-space limit in MiB (RLIMIT_AS).
        #[arg(long, default_value_t = kbsync_ingest::WorkerCommand::DEFAULT_MEMORY_LIMIT_MB)]
        memory_limit_mb: u64,
    },
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// A TOML configuration file (see `kbsync config example`).
    #[arg(long, env = "KBSYNC_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database, stored files and generated secret live [env: KBSYNC_DATA_DIR] [default: ./data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The address to listen on [env: KBSYNC_BIND] [default: 127.0.0.1:8080]
    #[arg(long)]
    bind: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password is asked for on the terminal (without echo), or read from
    /// --password-file or --password-stdin; never taken on the command line.
    Create {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Give the user the admin role.
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a documented example configuration file.
    Example,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A worker runs no async runtime and no logging: it limits itself, then serves its parent.
    if let Command::ExtractWorker { memory_limit_mb } = cli.command {
        return match kbsync_ingest::worker::run_worker(memory_limit_mb) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kbsync extract-worker: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kbsync: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kbsync: {e:#}");
            match e.downcast_ref::<Failure>() {
                Some(failure) => std::process::ExitCode::from(failure.exit.code()),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::ExtractWorker { .. } => {
            anyhow::bail!("extract-worker is served before the async runtime starts")
        }
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
        Command::Sync { kb, wait, common } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format, QUIET_LOG);
            let state = operator::open(&settings, true).await?;
            operator::sync::run(&state, &kb, wait).await
        }
        Command::Status { json, common } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format, QUIET_LOG);
            let state = operator::open(&settings, false).await?;
            let rows = operator::status::collect(&state).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", operator::status::table(&rows));
            }
            Ok(())
        }
        Command::Search {
            query,
            kb,
            limit,
            as_email,
            common,
        } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format, QUIET_LOG);
            let state = operator::open(&settings, false).await?;
            operator::search::run(
                &state,
                operator::search::Query {
                    text: &query,
                    kb: kb.as_deref(),
                    limit,
                    as_email: as_email.as_deref(),
                },
            )
            .await
        }
        Command::Serve { common, demo } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format, SERVER_LOG);
            serve(settings, demo).await
        }
        Command::Migrate { common } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format, SERVER_LOG);
            open_store(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Backup { backup, common } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format, SERVER_LOG);
            let copied = backup::backup(&settings, &backup).await?;
            println!(
                "backed up the database and {} blob files ({} already in the backup){} to {}",
                copied.blobs,
                copied.blobs_present,
                if copied.secret_key {
                    " and the secret key"
                } else {
                    ""
                },
                backup.display()
            );
            Ok(())
        }
        Command::Restore { backup, common } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format, SERVER_LOG);
            let copied = backup::restore(&settings, &backup)?;
            println!(
                "restored the database and {} blob files{} into {}",
                copied.blobs,
                if copied.secret_key {
                    " and the secret key"
                } else {
                    ""
                },
                settings.data_dir.display()
            );
            Ok(())
        }
        Command::RotateKey { common } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format, SERVER_LOG);
            rotate_key(&settings).await
        }
        Command::User {
            command:
                UserCommand::Create {
                    common,
                    email,
                    password,
                    admin,
                },
        } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format, SERVER_LOG);
            let password = password.read()?;
            let store = open_store(&settings).await?;
            let role = if admin { Role::Admin } else { Role::User };
            let user = users::create_user(
                store.as_ref(),
                &OsRandom,
                SystemClock.now(),
                &email,
                &password,
                role,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created {} user {} ({})", user.role, user.email, user.id);
            Ok(())
        }
    }
}

fn load_settings(common: &CommonArgs) -> anyhow::Result<Settings> {
    let file = match &common.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let flags = Flags {
        data_dir: common.data_dir.clone(),
        bind: common.bind.clone(),
    };
    Ok(Settings::resolve(&flags, &|name| std::env::var(name).ok(), file)?)
}

/// What a server logs unless RUST_LOG says otherwise.
const SERVER_LOG: &str = "info,sqlx=warn";
/// What the commands for a terminal log: their output is what the person reads; the log only
/// warns.
const QUIET_LOG: &str = "warn";

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .with_ansi(ansi);
    // A second initialisation (never expected) would only fail to replace the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Standard error that drops what it cannot write. A server must outlive whoever reads its log:
/// the subscriber's own error report on a closed stderr would otherwise panic the process.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(std::io::stderr().write(buf).unwrap_or(buf.len()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create the data directory {}", settings.data_dir.display()))?;
    let store = kbsync_store::connect(&settings.database_url)
        .await
        .context("cannot open the database")?;
    Ok(store)
}

/// `kbsync rotate-key`: every stored secret under the current key, then how many are not.
async fn rotate_key(settings: &Settings) -> anyhow::Result<()> {
    // Never a new, empty database: rotating nothing would report success.
    if let Some(file) = backup::sqlite_file(&settings.database_url)
        && !file.is_file()
    {
        anyhow::bail!("there is no database at {}", file.display());
    }
    let secret_key = secret::load(settings)?;
    let cipher = TokenCipher::new(&secret_key, settings.secret_key_previous.as_deref())
        .map_err(|e| anyhow::anyhow!("KBSYNC_SECRET_KEY: {e}"))?;
    let url = &settings.database_url;
    let report: RotationReport = if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(url)
            .await
            .context("cannot open the database")?;
        store.migrate().await.context("cannot migrate the database")?;
        rotate_secrets(&store, &cipher).await?
    } else {
        let store = PostgresStore::connect(url)
            .await
            .context("cannot open the database")?;
        store.migrate().await.context("cannot migrate the database")?;
        rotate_secrets(&store, &cipher).await?
    };
    println!(
        "re-encrypted {} stored secrets under key {}",
        report.rotated,
        cipher.key_id()
    );
    println!("{} remain under another key", report.remaining);
    if report.unreadable > 0 {
        anyhow::bail!(
            "{} stored secrets could be decrypted with neither KBSYNC_SECRET_KEY nor \
             KBSYNC_SECRET_KEY_PREVIOUS; they stay as they are (set the key they were written under \
             as KBSYNC_SECRET_KEY_PREVIOUS and run again, or have those knowledge bases connect again)",
            report.unreadable
        );
    }
    Ok(())
}

#[cfg_attr(
    not(feature = "demo"),
    expect(unused_mut, reason = "only the demo changes the settings")
)]
async fn serve(mut settings: Settings, demo: bool) -> anyhow::Result<()> {
    #[cfg(not(feature = "demo"))]
    if demo {
        anyhow::bail!("--demo: this kbsync was built without the demo (cargo feature `demo`)");
    }
    // The demo's emulated drives must be up before the datasources are built from the settings.
    #[cfg(feature = "demo")]
    let emulators = if demo {
        Some(demo::start_emulators(&mut settings).await?)
    } else {
        None
    };
    // Known before the database is opened (opening creates it): the demo's account, whose password
    // is public, is created only in a database this start creates.
    #[cfg(feature = "demo")]
    let database_is_new = demo::database_is_new(&settings.database_url);
    let store = open_store(&settings).await?;
    let secret_key = secret::load_or_generate(&settings)?;
    let cipher = TokenCipher::new(&secret_key, settings.secret_key_previous.as_deref())
        .map_err(|e| anyhow::anyhow!("KBSYNC_SECRET_KEY: {e}"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let random = Arc::new(OsRandom);

    if let Some((email, password)) = &settings.admin {
        match users::bootstrap_admin(store.as_ref(), random.as_ref(), clock.now(), email, password).await {
            Ok(Some(user)) => tracing::info!(user.email = %user.email, "created the first admin"),
            Ok(None) => {}
            Err(e) => anyhow::bail!("KBSYNC_ADMIN_EMAIL / KBSYNC_ADMIN_PASSWORD: {e}"),
        }
    }

    let state = wiring::app_state(&settings, store, cipher, clock, random)?;

    #[cfg(feature = "demo")]
    if demo {
        demo::seed(&state, database_is_new).await?;
    }

    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("KBSYNC_BIND / --bind: cannot listen on {}", settings.bind))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, public_url = %settings.public_url, database = store_kind(&settings.database_url), "kbsync listening");
    kbsync_server::serve(listener, state, shutdown_signal()).await?;
    #[cfg(feature = "demo")]
    if let Some(emulators) = emulators {
        emulators.shutdown().await;
    }
    tracing::info!("kbsync stopped");
    Ok(())
}

fn store_kind(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
