//! The `kbsync` binary: command line ([`Cli`]), configuration ([`config`]) and wiring
//! ([`wiring`], which builds the running parts from the configuration). The only crate that
//! names concrete implementations.
//!
//! The `demo` cargo feature (on by default) adds `serve --demo`: an in-process emulated OneDrive
//! and sample documents. A production build can leave it out (`--no-default-features`).

mod backup;
mod config;
#[cfg(feature = "demo")]
mod demo;
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
    /// Create a user.
    Create {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
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
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
        Command::Serve { common, demo } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format);
            serve(settings, demo).await
        }
        Command::Migrate { common } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format);
            open_store(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Backup { backup, common } => {
            let settings = load_settings(&common)?;
            init_logging(settings.log_format);
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
            init_logging(settings.log_format);
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
            init_logging(settings.log_format);
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
            init_logging(settings.log_format);
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

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
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
    // The demo's emulated OneDrive must be up before the datasource is built from the settings.
    #[cfg(feature = "demo")]
    let emulator = if demo {
        Some(demo::start_emulator(&mut settings).await?)
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
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
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
