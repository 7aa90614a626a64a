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
const CONFIG_VARS: [&str; 15] = [
    "APIKEY",
    "SITEURL",
    "PORT",
    "BIND",
    "TLS_CERT",
    "TLS_KEY",
    "ALLOWED_ORIGINS",
    "TRUSTED_PROXIES",
    "MAX_LINES",
    "MAX_CONNECTIONS_PER_IP",
    "MAX_SOCKETS_PER_IP",
    "MAX_WAIT_ALONE",
    "QUEUE_BUDGET_MIB",
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
    let bad = format!("ws://{base}/ws?apikey={}&line={line}", wrong.expose());
    assert_eq!(refused_status(&bad, None).await.0, 401);
    let good = format!("ws://{base}/ws?apikey={}&line={line}", key.expose());
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

/// Starts the binary with `args`; returns it, its port, and a task collecting its stderr.
async fn spawn_server(args: &[&str]) -> (Child, u16, tokio::task::JoinHandle<String>, StdoutLines) {
    let mut child = command()
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(args)
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
    let (_, port, stdout) = start_links(&mut child).await;
    (child, port, stderr_task, stdout)
}

#[tokio::test]
async fn refused_requests_do_not_flood_the_log() {
    let (mut child, port, stderr, _stdout) = spawn_server(&[]).await;
    const N: usize = 300;
    let url = format!(
        "ws://127.0.0.1:{port}/ws?apikey=nope&line={}",
        random_line()
    );
    for _ in 0..N {
        let status = refused_status(&url, None).await.0;
        assert!(status == 401 || status == 429, "{status}");
    }
    let base = format!("127.0.0.1:{port}");
    let stream = tokio::net::TcpStream::connect(&base)
        .await
        .expect("connect");
    let metrics = http_get(stream, &base, "/metrics", &[]).await.body_text();
    child.kill().await.expect("kill");
    let logs = stderr.await.expect("stderr");
    let refused = logs
        .lines()
        .filter(|l| l.contains("connection refused"))
        .count();
    eprintln!(
        "{N} refused requests wrote {refused} log lines, {} bytes of log",
        logs.len()
    );
    // Every refusal is counted; few are written (20 per 10 s by default).
    assert!(
        metrics.contains("line_auth_failures_total 300"),
        "{metrics}"
    );
    assert!((1..=20).contains(&refused), "{refused} lines:\n{logs}");
    assert!(logs.len() < 20 * 1024, "{} bytes of log", logs.len());
}

#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let hard = open_files(&limits).1;
    // Start it with a soft limit of 256, as a shell with `ulimit -Sn 256` would.
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -Sn 256 && exec \"$0\" \"$@\"", BIN])
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .env_remove("APIKEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawns");
    let _ = start_links(&mut child).await;
    let pid = child.id().expect("pid");
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    child.kill().await.expect("kill");
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await;
    assert_eq!(open_files(&theirs), (hard.clone(), hard), "{theirs}");
    assert!(stderr.contains("open file limit"), "{stderr}");
}

/// The soft and hard "Max open files" of a /proc/PID/limits text.
fn open_files(limits: &str) -> (String, String) {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().expect("soft").to_owned(),
        fields.next().expect("hard").to_owned(),
    )
}
