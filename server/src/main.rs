//! The `line-server` binary: flags and environment in, a running relay out.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use line_server::apikey::ApiKey;
use tracing_subscriber::EnvFilter;

/// line: end-to-end-encrypted voice calls between two browsers, relayed by this server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The root API key browsers must present (at least 72 letters a-z, A-Z); generated when unset.
    #[arg(long, env = "APIKEY", hide_env_values = true)]
    apikey: Option<String>,
    /// The public base URL, used in the printed links.
    #[arg(long, env = "SITEURL")]
    siteurl: Option<String>,
    /// The TCP port to listen on.
    #[arg(long, env = "PORT", default_value_t = 7777)]
    port: u16,
    /// The address to listen on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    /// Serve the client page from this folder.
    #[arg(long, default_value = "www")]
    www: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a fresh API key and exit.
    GenerateApikey,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    if let Some(Command::GenerateApikey) = args.command {
        #[allow(clippy::print_stdout, reason = "the key is this command's output")]
        {
            println!("{}", ApiKey::generate().expose());
        }
        return Ok(());
    }
    let apikey = match &args.apikey {
        Some(key) => ApiKey::parse(key)?,
        None => ApiKey::generate(),
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let port = listener.local_addr()?.port();
    let siteurl = args
        .siteurl
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    #[allow(
        clippy::print_stdout,
        reason = "the operator needs the start links once"
    )]
    {
        let key = apikey.expose();
        println!("Try {siteurl}/line.html?apikey={key}#generate_leaf");
        println!("Try mobile {siteurl}/line.html?apikey={key}&mobile=1#generate_leaf");
    }
    tracing::info!(%addr, "listening");
    line_server::serve(listener, line_server::Config { www: args.www }).await?;
    Ok(())
}
