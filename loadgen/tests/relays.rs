//! The load generator against real relays in this process: line-server and the raw-TCP baseline.
//! Short runs of a few calls; they assert delivery and reporting, never a speed.

use std::time::Duration;

use line_loadgen::{
    ApiKey, AudioShape, LoadError, Peer, RunConfig, RunReport, Target, TargetKind, Timing,
    connect_calls, run_calls,
};
use tokio_util::sync::CancellationToken;

const CALLS: usize = 2;

/// A short run of 10 ms frames at 16 kHz (320 bytes of PCM): real SFrame frames paced in real
/// time like the 200 kHz ones, but light enough for unoptimised AES-GCM on a busy machine (a debug
/// build encrypts only a few hundred 4 KB frames a second; the benchmark runs 200 kHz in release).
fn config(target: Target) -> RunConfig {
    let timing = Timing {
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(1),
    };
    let mut config = RunConfig::new(target, CALLS, timing);
    config.shape = AudioShape {
        sample_rate: 16_000,
        frame_samples: 160,
    };
    config
}

/// Every frame sent arrived, decrypted and matched, and the figures are filled in.
fn assert_complete(report: &RunReport) {
    // 1.5 s of 10 ms frames from each of the two peers of every call.
    assert_eq!(report.frames_sent, (CALLS * 2 * 150) as u64, "{report:#?}");
    assert_eq!(report.frames_received, report.frames_sent, "{report:#?}");
    assert_eq!(report.frames_lost, 0);
    assert_eq!(report.frames_bad, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // Only the frames of the measured second count towards latency.
    assert_eq!(report.latency.count, CALLS * 2 * 100);
    let l = report.latency;
    assert!(
        0.0 < l.p50_us && l.p50_us <= l.p99_us && l.p99_us <= l.p999_us && l.p999_us <= l.max_us,
        "{l:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_server_carries_every_frame_and_refuses_a_third_peer() {
    let key = line_server::apikey::ApiKey::generate();
    let server =
        line_server::Server::new(line_server::Config::new(key.clone())).expect("server starts");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let stop = CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));

    let target = Target::websocket(TargetKind::Line, addr, ApiKey::new(key.expose().to_owned()));
    let calls = connect_calls(&target, CALLS).await.expect("calls connect");
    match Peer::join(&target, calls[0].line(), &calls[0].join_token()).await {
        Err(LoadError::Refused { status: 409 }) => {}
        other => panic!("a third peer got in: {other:?}"),
    }
    // Without the leaf's join token, not even a free slot is there for the taking.
    let other = line_protocol::leaf::LeafKey::from_random([1; 32]).join_token();
    match Peer::join(&target, calls[1].line(), &other).await {
        Err(LoadError::Refused { status: 423 }) => {}
        other => panic!("a peer with another token got in: {other:?}"),
    }
    let mut config = config(target);
    // The server runs in this process, so its CPU and memory are this process's.
    config.server_pid = Some(std::process::id());
    let report = run_calls(&config, calls).await.expect("the run completes");
    assert_complete(&report);
    let server = report.server.expect("server usage read from /proc");
    assert!(server.rss_kib > 0);

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_baseline_carries_every_frame() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let relay = tokio::spawn(line_tcp_relay::serve(listener));

    let report = line_loadgen::run(&config(Target::tcp(addr)))
        .await
        .expect("the run completes");
    assert_complete(&report);
    assert_eq!(report.target, TargetKind::Tcp);
    assert!(report.server.is_none());
    relay.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_server_carries_frames_as_datagrams() {
    let key = line_server::apikey::ApiKey::generate();
    let server =
        line_server::Server::new(line_server::Config::new(key.clone())).expect("server starts");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp port 0");
    let server = server.with_webtransport_socket(udp);
    let stop = CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));

    let target = Target::websocket(
        TargetKind::LineWebTransport,
        addr,
        ApiKey::new(key.expose().to_owned()),
    );
    let calls = connect_calls(&target, CALLS).await.expect("calls connect");
    // The same checks as a WebSocket: a third peer is refused before a session exists.
    assert!(matches!(
        Peer::join(&target, calls[0].line(), &calls[0].join_token()).await,
        Err(LoadError::WebTransport(_))
    ));
    let report = run_calls(&config(target), calls)
        .await
        .expect("the run completes");
    assert_eq!(report.frames_sent, (CALLS * 2 * 150) as u64, "{report:#?}");
    // Datagrams may be lost, even on loopback when the machine is busy; none may be corrupted.
    assert!(
        report.frames_received * 20 >= report.frames_sent * 19,
        "{report:#?}"
    );
    assert_eq!(report.frames_bad, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
}
