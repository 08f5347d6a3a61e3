//! `msgraph-emulator`: serves the emulator on an address until interrupted.

use clap::Parser;
use msgraph_emulator::{
    ClientRegistration, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REDIRECT_URI, Emulator,
};
use std::net::SocketAddr;

/// An emulator of Microsoft Graph drives and the Microsoft identity platform.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765")]
    bind: SocketAddr,
    /// Fill the default drive with this many generated files.
    #[arg(long, default_value_t = 0)]
    generate: usize,
    /// Make the default drive a lazily generated drive of this many items (folders and small text files,
    /// computed on demand; a million cost no memory). Replaces --generate.
    #[arg(long)]
    generate_lazily: Option<u64>,
    /// Seed of ids, tokens and generated content.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Approve authorize requests without showing the consent page.
    #[arg(long)]
    auto_consent: bool,
    /// Client id of the confidential client to register.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    client_id: String,
    /// Its client secret.
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET)]
    client_secret: String,
    /// Its redirect URIs (repeat the flag for several).
    #[arg(long = "redirect-uri", default_values_t = [DEFAULT_REDIRECT_URI.to_string()])]
    redirect_uris: Vec<String>,
    /// Base URL to advertise when clients reach the emulator under another name.
    #[arg(long)]
    public_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    #[expect(clippy::disallowed_methods, reason = "reports the real start-up time")]
    let started = std::time::Instant::now();
    let mut b = Emulator::builder()
        .bind(args.bind)
        .seed(args.seed)
        .auto_consent(args.auto_consent)
        .generate(args.generate)
        .client(ClientRegistration {
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
            redirect_uris: args.redirect_uris.clone(),
            display_name: "kbsync".into(),
            spa: false,
        });
    if let Some(n) = args.generate_lazily {
        b = b.generate_lazily(n);
    }
    if let Some(u) = args.public_url {
        b = b.public_base_url(u);
    }
    let emu = b.start().await?;
    let ctl = emu.control();
    let info = ctl.info();
    println!(
        "msgraph-emulator listening on {} (started in {:.1?})",
        emu.local_addr(),
        started.elapsed()
    );
    println!("graph base url:    {}", info.graph_url);
    println!("authority url:     {}", info.authority_url);
    println!("authorize url:     {}", info.authorize_url);
    println!("token url:         {}", info.token_url);
    println!("openid issuer:     {}", info.issuer);
    println!("control api url:   {}", info.control_url);
    println!("tenant id:         {}", info.tenant_id);
    println!("default user id:   {}", info.default_user_id);
    println!("default drive id:  {}", info.default_drive_id);
    println!("client id:         {}", args.client_id);
    println!("client secret:     {}", args.client_secret);
    for r in &args.redirect_uris {
        println!("redirect uri:      {r}");
    }
    println!("auto consent:      {}", args.auto_consent);
    match args.generate_lazily {
        Some(n) => println!("generated items:   {n} (lazily)"),
        None => println!("generated files:   {}", args.generate),
    }
    tokio::signal::ctrl_c().await?;
    emu.shutdown().await;
    Ok(())
}
