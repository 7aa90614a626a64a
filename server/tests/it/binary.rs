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
const CONFIG_VARS: [&str; 19] = [
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
    "WEBTRANSPORT_PORT",
    "WEBTRANSPORT_PUBLIC_PORT",
    "WEBTRANSPORT_SCALEOUT_PORTS",
    "NO_WEBTRANSPORT",
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

#[tokio::test]
async fn switches_in_the_environment_take_the_usual_spellings() {
    let key = ApiKey::generate();
    let on = ["1", "true", "yes", "on", "TRUE"].map(|v| (v, false));
    let off = ["0", "false", "no", "off"].map(|v| (v, true));
    for (value, offered) in on.into_iter().chain(off) {
        let mut child = command()
            .env("APIKEY", key.expose())
            .env("NO_WEBTRANSPORT", value)
            .env("TLS12", value)
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns");
        let (_, port, _) = start_links(&mut child).await;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut stream = tokio::io::BufStream::new(stream);
        let (status, _) = keep_alive_get(
            &mut stream,
            &format!("/webtransport?apikey={}", key.expose()),
            None,
        )
        .await;
        let expected = if offered { 200 } else { 404 };
        assert_eq!(status, expected, "NO_WEBTRANSPORT={value}");
        child.kill().await.expect("stop the server");
    }
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
        "ws://127.0.0.1:{port}/ws?apikey=nope&{}",
        join_params(random_line())
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

/// `VmRSS` and `VmHWM` (the peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A gauge or counter without labels from `/metrics`.
async fn metric(port: u16, name: &str) -> u64 {
    let base = format!("127.0.0.1:{port}");
    let stream = tokio::net::TcpStream::connect(&base)
        .await
        .expect("connect");
    let text = http_get(stream, &base, "/metrics", &[]).await.body_text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

/// Receivers that never read, their peers sending the largest frames: the server's memory stays
/// within the queue budget plus a fixed allowance per line, whatever each queue alone could hold.
/// The test uses a 16 MiB budget, so the budget (not the per-queue bound) is what holds: without
/// it these 300 lines queue about 57 MiB. `LINE_STALLED_LINES` and `LINE_STALLED_BUDGET_MIB`
/// change the run (64 is the server's default budget); the figures are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_lines_keep_the_server_within_its_memory_bound() {
    use futures_util::SinkExt as _;
    use line_protocol::MAX_FRAME_LEN;
    use tokio_tungstenite::tungstenite::Message;

    const FRAMES_PER_LINE: usize = 20;
    // Two sockets' read buffers, a frame in the writer, tasks and tables: measured about 175 KiB.
    const ALLOWANCE_PER_LINE_KIB: u64 = 256;
    let knob = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let lines = knob("LINE_STALLED_LINES", 300);
    let budget_mib = knob("LINE_STALLED_BUDGET_MIB", 16);
    // Two sockets per line on each side of loopback, in this one process.
    line_server::fd_limit::raise_to_hard().expect("open file limit");
    let key = ApiKey::generate();
    let mut child = command()
        .env("APIKEY", key.expose())
        .args(["--port", "0", "--bind", "127.0.0.1"])
        // Every line comes from 127.0.0.1 here.
        .args(["--max-sockets-per-ip", "0", "--max-connections-per-ip", "0"])
        .args(["--queue-budget-mib", &budget_mib.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let (_, port, _stdout) = start_links(&mut child).await;
    let pid = child.id().expect("pid");
    let (fresh_kib, _) = memory_kib(pid);
    let url = |line| {
        format!(
            "ws://127.0.0.1:{port}/ws?apikey={}&{}",
            key.expose(),
            join_params(line)
        )
    };

    let started = std::time::Instant::now();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..lines {
        let line = random_line();
        // A receiver with a small kernel buffer that never reads after its first message.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
        let tcp = socket
            .connect(format!("127.0.0.1:{port}").parse().expect("addr"))
            .await
            .expect("connect");
        let (mut receiver, _) = tokio_tungstenite::client_async(url(line), tcp)
            .await
            .expect("receiver joins");
        assert_eq!(next_control(&mut receiver).await, RelayMessage::Waiting);
        receivers.push(receiver);
        let (mut sender, _) = tokio_tungstenite::connect_async(url(line))
            .await
            .expect("sender joins");
        assert_eq!(next_control(&mut sender).await, RelayMessage::PeerJoined);
        senders.push(sender);
    }
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut sender)| {
            let frame = axum::body::Bytes::from(frame(i as u64, 0, MAX_FRAME_LEN - 17));
            tokio::spawn(async move {
                for _ in 0..FRAMES_PER_LINE {
                    sender
                        .feed(Message::Binary(frame.clone()))
                        .await
                        .expect("a sender is never blocked");
                }
                sender.flush().await.expect("flush");
                sender
            })
        })
        .collect();
    let mut senders = Vec::new();
    for task in sending {
        senders.push(task.await.expect("sender"));
    }
    // Wait until the server has taken in every frame: the queues stop changing.
    let mut last = (u64::MAX, u64::MAX);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let queued = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = (
            metric(port, "line_queued_bytes").await,
            metric(port, "line_frames_relayed_total").await,
        );
        if now == last {
            break now.0;
        }
        last = now;
        assert!(
            std::time::Instant::now() < deadline,
            "the queues never settled"
        );
    };
    let (rss_kib, peak_kib) = memory_kib(pid);
    eprintln!(
        "{lines} stalled lines, {FRAMES_PER_LINE} frames of {MAX_FRAME_LEN} B each sent in \
         {:?}, queue budget {budget_mib} MiB: server RSS {} MiB fresh, {} MiB now, {} MiB at \
         peak; {} MiB queued",
        started.elapsed(),
        fresh_kib / 1024,
        rss_kib / 1024,
        peak_kib / 1024,
        queued / (1024 * 1024)
    );
    child.kill().await.expect("kill");
    drop((receivers, senders));
    // The queues hold at most the budget plus one frame per receiver...
    let budget = (budget_mib * 1024 * 1024) as u64;
    assert!(
        queued <= budget + (lines * MAX_FRAME_LEN) as u64,
        "{queued} bytes queued"
    );
    // ...and the whole server stays within the budget and a fixed allowance per line (with the
    // default 64 MiB budget and 300 lines: 12 + 64 + 75 MiB, within 160 MiB).
    let bound_kib = fresh_kib + budget / 1024 + lines as u64 * ALLOWANCE_PER_LINE_KIB;
    assert!(
        peak_kib <= bound_kib,
        "the server reached {} MiB with {lines} stalled lines, over {} MiB",
        peak_kib / 1024,
        bound_kib / 1024
    );
}

/// One keep-alive HTTP/1.1 GET; returns the status and the body length.
async fn keep_alive_get(
    stream: &mut tokio::io::BufStream<tokio::net::TcpStream>,
    path: &str,
    accept_encoding: Option<&str>,
) -> (u16, usize) {
    use tokio::io::AsyncWriteExt as _;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n");
    if let Some(encoding) = accept_encoding {
        request.push_str(&format!("Accept-Encoding: {encoding}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.flush().await.expect("flush");
    let mut status_line = String::new();
    stream.read_line(&mut status_line).await.expect("status");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut length = 0;
    loop {
        let mut header = String::new();
        stream.read_line(&mut header).await.expect("header");
        if header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("length");
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("body");
    (status, length)
}

/// CPU seconds a process has used (user + system), from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .expect("fields")
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

/// What a compressed request for the wasm bundle costs the server beside an uncompressed one,
/// and the relay's round trips while four clients fetch it in a loop. A measurement: run it on
/// a release build, whose binary embeds the real bundle (`just build` first):
/// `cargo test --release -p line-server --test it asset_flood_figures -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn asset_flood_figures() {
    const WASM: &str = "/pkg/line_client_bg.wasm";
    const ENCODINGS: &str = "gzip, deflate, br, zstd";
    let key = ApiKey::generate();
    let mut child = command()
        .env("APIKEY", key.expose())
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--max-connections-per-ip",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let (_, port, _stdout) = start_links(&mut child).await;
    let pid = child.id().expect("pid");
    let addr = format!("127.0.0.1:{port}");
    let connect = || {
        let addr = addr.clone();
        async move {
            tokio::io::BufStream::new(tokio::net::TcpStream::connect(addr).await.expect("connect"))
        }
    };
    // The first compressed request waits for the compression made at start, if it is not done.
    let mut conn = connect().await;
    let (status, plain_len) = keep_alive_get(&mut conn, WASM, None).await;
    assert_eq!(status, 200, "no wasm bundle: run `just build` first");
    let (_, compressed_len) = keep_alive_get(&mut conn, WASM, Some(ENCODINGS)).await;

    // Cost: server CPU per request, each way, over 2000 requests on one connection.
    const N: usize = 2000;
    let mut cost = Vec::new();
    for encoding in [None, Some(ENCODINGS)] {
        let (cpu0, t0) = (cpu_seconds(pid), std::time::Instant::now());
        for _ in 0..N {
            keep_alive_get(&mut conn, WASM, encoding).await;
        }
        let cpu = (cpu_seconds(pid) - cpu0) / N as f64;
        let wall = t0.elapsed().as_secs_f64() / N as f64;
        cost.push((cpu, wall));
    }
    let round_trips = |label: &'static str| {
        // One URL per peer: each is its own participant on the line.
        let line = random_line();
        let url = |line| {
            format!(
                "ws://{addr}/ws?apikey={}&{}",
                key.expose(),
                join_params(line)
            )
        };
        let (url_a, url_b) = (url(line), url(line));
        async move {
            let (mut a, _) = tokio_tungstenite::connect_async(&url_a).await.expect("a");
            let _ = next_control(&mut a).await;
            let (mut b, _) = tokio_tungstenite::connect_async(&url_b).await.expect("b");
            let _ = next_control(&mut b).await;
            let _ = next_control(&mut a).await;
            let mut rtts = Vec::new();
            for i in 0..1000u64 {
                let f = frame(1, i, 4016);
                let t = std::time::Instant::now();
                send(&mut a, f).await;
                let echoed = next_binary(&mut b).await;
                send(&mut b, echoed).await;
                let _ = next_binary(&mut a).await;
                rtts.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            rtts.sort();
            let ms =
                |p: usize| rtts[(rtts.len() * p / 100).min(rtts.len() - 1)].as_secs_f64() * 1e3;
            eprintln!(
                "{label}: relay round trip (two hops, 4 KB) p50 {:.2} ms, p99 {:.2} ms",
                ms(50),
                ms(99)
            );
            (ms(50), ms(99))
        }
    };
    let quiet = round_trips("quiet").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let fetched = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flood: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let fetched = std::sync::Arc::clone(&fetched);
            let connect = connect();
            tokio::spawn(async move {
                let mut conn = connect.await;
                while !stop.is_cancelled() {
                    keep_alive_get(&mut conn, WASM, Some(ENCODINGS)).await;
                    fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    let t0 = std::time::Instant::now();
    let flooded = round_trips("4 clients fetching the wasm in a loop").await;
    let rate =
        fetched.load(std::sync::atomic::Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    stop.cancel();
    for task in flood {
        let _ = task.await;
    }
    child.kill().await.expect("kill");
    let ratio = cost[1].0 / cost[0].0.max(1e-9);
    eprintln!(
        "wasm {plain_len} B, compressed {compressed_len} B; server CPU per request: plain {:.3} ms, \
         compressed {:.3} ms (ratio {ratio:.2}); wall per request {:.3} / {:.3} ms; flood {rate:.0} \
         requests/s; relay p50/p99 quiet {:.2}/{:.2} ms, flooded {:.2}/{:.2} ms",
        cost[0].0 * 1e3,
        cost[1].0 * 1e3,
        cost[0].1 * 1e3,
        cost[1].1 * 1e3,
        quiet.0,
        quiet.1,
        flooded.0,
        flooded.1
    );
}
