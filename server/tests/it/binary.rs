//! The real `line-server` binary: start links, log redaction, weak keys, signals.

use std::process::Stdio;
use std::time::Duration;

use line_protocol::control::RelayMessage;
use line_server::apikey::ApiKey;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_line-server");

/// Every environment variable the server reads its configuration from.
const CONFIG_VARS: [&str; 11] = [
    "APIKEY",
    "SITEURL",
    "PORT",
    "BIND",
    "TLS_CERT",
    "TLS_KEY",
    "ALLOWED_ORIGINS",
    "TRUSTED_PROXIES",
    "MAX_LINES",
    "WWW",
    "LOG_LEVEL",
];

fn command() -> Command {
    let mut command = Command::new(BIN);
    // Nothing from the outer environment decides these tests.
    for var in CONFIG_VARS.iter().chain(&["RUST_LOG"]) {
        command.env_remove(var);
    }
    command.kill_on_drop(true);
    command
}

#[tokio::test]
async fn weak_apikey_exits_non_zero_with_the_reason() {
    for (key, needle) in [
        ("tooshort", "at least 72"),
        (&*"a1".repeat(40), "only letters"),
    ] {
        let output = command()
            .env("APIKEY", key)
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .output()
            .await
            .expect("runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{stderr}");
        assert!(stderr.contains("generate-apikey"), "{stderr}");
    }
}

#[tokio::test]
async fn generate_apikey_prints_a_valid_key() {
    let output = command()
        .arg("generate-apikey")
        .output()
        .await
        .expect("runs");
    assert!(output.status.success());
    let key = String::from_utf8(output.stdout).expect("utf-8");
    assert!(ApiKey::parse(key.trim()).is_ok(), "{key}");
}

#[tokio::test]
async fn help_documents_every_environment_variable() {
    let output = command().arg("--help").output().await.expect("runs");
    let help = String::from_utf8_lossy(&output.stdout);
    for var in CONFIG_VARS.iter().chain(&["generate-apikey", "--www"]) {
        assert!(help.contains(var), "--help lacks {var}");
    }
}

type StdoutLines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Reads stdout until the start links; returns them, the port and the rest of stdout.
async fn start_links(child: &mut Child) -> (Vec<String>, u16, StdoutLines) {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut links = Vec::new();
    while links.len() < 2 {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("links in time")
            .expect("read")
            .expect("links before eof");
        links.push(line);
    }
    let port = links[0]
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port in the link");
    (links, port, lines)
}

#[tokio::test]
async fn apikey_appears_only_in_the_start_links_and_sigterm_closes_with_1001() {
    let key = ApiKey::generate();
    let wrong = ApiKey::generate();
    let mut child = command()
        .env("APIKEY", key.expose())
        .args(["--port", "0", "--bind", "127.0.0.1", "--log-level", "debug"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let (links, port, mut stdout) = start_links(&mut child).await;
    assert_eq!(
        links[0],
        format!(
            "Try http://127.0.0.1:{port}/line.html?apikey={}#generate_leaf",
            key.expose()
        )
    );
    assert_eq!(
        links[1],
        format!(
            "Try http://127.0.0.1:{port}/line.html?apikey={}&mobile=1#generate_leaf",
            key.expose()
        )
    );

    // Requests carrying the key and a wrong key, the page included.
    let base = format!("127.0.0.1:{port}");
    let page = format!("/line.html?apikey={}", key.expose());
    let stream = tokio::net::TcpStream::connect(&base)
        .await
        .expect("connect");
    assert_eq!(http_get(stream, &base, &page, &[]).await.status, 200);
    let line = random_line();
    let me = random_participant();
    let bad = format!(
        "ws://{base}/ws?apikey={}&{}",
        wrong.expose(),
        join_params_as(line, me)
    );
    assert_eq!(refused_status(&bad, None).await.0, 401);
    let good = format!(
        "ws://{base}/ws?apikey={}&{}",
        key.expose(),
        join_params_as(line, me)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(good)
        .await
        .expect("connects");
    assert_eq!(next_control(&mut ws).await, RelayMessage::Waiting);

    // SIGTERM: the socket is closed with 1001 and the process exits cleanly.
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 1001);
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
    let mut logs = stderr_task.await.expect("stderr");
    while let Ok(Some(line)) = stdout.next_line().await {
        logs.push_str(&line);
        logs.push('\n');
    }

    assert!(logs.contains("connection received"), "{logs}");
    assert!(logs.contains("connection ended"), "{logs}");
    assert!(logs.contains("apikey=<redacted>"), "{logs}");
    assert!(
        !logs.contains(key.expose()),
        "the key leaked into the logs:\n{logs}"
    );
    assert!(
        !logs.contains(wrong.expose()),
        "a tried key leaked into the logs:\n{logs}"
    );
    // Whoever has a line's join token and a participant id can take that participant's slot.
    assert!(
        logs.contains("join=<redacted>&participant=<redacted>"),
        "{logs}"
    );
    for secret in [token_of(line).to_string(), me.to_string()] {
        assert!(
            !logs.contains(&secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn line_ids_are_logged_only_at_debug() {
    let key = ApiKey::generate();
    let mut child = command()
        .env("APIKEY", key.expose())
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let (_, port, _) = start_links(&mut child).await;
    let line = random_line();
    let url = format!(
        "ws://127.0.0.1:{port}/ws?apikey={}&{}",
        key.expose(),
        join_params(line)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connects");
    assert_eq!(next_control(&mut ws).await, RelayMessage::Waiting);
    // A second socket with another token is refused, and its refusal logged.
    let other = url.replace(
        &token_of(line).to_string(),
        &token_of(random_line()).to_string(),
    );
    assert_eq!(refused_status(&other, None).await.0, 423);
    ws.close(None).await.expect("close");
    drop(ws);
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    let logs = stderr_task.await.expect("stderr");
    assert!(logs.contains("refused 423"), "{logs}");
    assert!(logs.contains("connection ended"), "{logs}");
    assert!(
        !logs.contains(&line.to_string()),
        "a line id in the info log:\n{logs}"
    );
}

/// Runs `line-server healthcheck` with these settings; returns whether it exited 0, and stderr.
async fn healthcheck(port: u16, tls: Option<&std::path::Path>) -> (bool, String) {
    let mut check = command();
    check
        .arg("healthcheck")
        .env("PORT", port.to_string())
        .env("BIND", "127.0.0.1");
    if let Some(dir) = tls {
        check
            .env("TLS_CERT", dir.join("fullchain.pem"))
            .env("TLS_KEY", dir.join("privkey.pem"));
    }
    let output = tokio::time::timeout(Duration::from_secs(15), check.output())
        .await
        .expect("healthcheck finishes in time")
        .expect("runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn healthcheck_subcommand_asks_the_running_server_plain_and_over_tls() {
    let dir = std::env::temp_dir().join(format!("line-health-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let made =
        rcgen::generate_simple_self_signed(vec!["line.example.com".to_owned()]).expect("rcgen");
    std::fs::write(dir.join("fullchain.pem"), made.cert.pem()).expect("write cert");
    std::fs::write(dir.join("privkey.pem"), made.signing_key.serialize_pem()).expect("write key");

    for tls in [None, Some(dir.as_path())] {
        let mut server = command();
        server
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(dir) = tls {
            server
                .env("TLS_CERT", dir.join("fullchain.pem"))
                .env("TLS_KEY", dir.join("privkey.pem"));
        }
        let mut child = server.spawn().expect("spawns");
        let (links, port, _stdout) = start_links(&mut child).await;
        assert_eq!(links[0].starts_with("Try https://"), tls.is_some());

        // The certificate names line.example.com, not 127.0.0.1: the check talks to itself.
        let (healthy, stderr) = healthcheck(port, tls).await;
        assert!(healthy, "tls {}: {stderr}", tls.is_some());
        // The wrong scheme is not healthy.
        let other = if tls.is_some() {
            None
        } else {
            Some(dir.as_path())
        };
        let (healthy, stderr) = healthcheck(port, other).await;
        assert!(!healthy);
        assert!(stderr.contains("line-server healthcheck:"), "{stderr}");

        child.kill().await.expect("kill");
        let _ = child.wait().await;
        let (healthy, stderr) = healthcheck(port, tls).await;
        assert!(!healthy, "a stopped server is not healthy");
        assert!(stderr.contains("cannot ask the server"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
