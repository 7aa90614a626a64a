//! The shipped nginx configurations (`deploy/nginx/*.conf`), rendered with envsubst as the
//! README shows, run by a real nginx on loopback in front of the real `line-server` binary.
//!
//! Needs nginx, its stream module (for the UDP half of the scale-out) and envsubst (`just setup`
//! installs them). Without them the tests say so loudly and pass, except in CI (`CI=true`), where a
//! missing tool is a failure.

mod harness;
mod scaleout_udp;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use line_protocol::control::RelayMessage;

use harness::*;

#[tokio::test]
async fn nginx_terminates_tls_passes_the_client_address_and_keeps_the_key_out_of_its_logs() {
    let Some(tools) = Tools::find() else { return };
    let dir = TempDir::new("line-nginx");
    let cert = Cert::write(&dir);
    let https = free_port();
    let site = format!("https://localhost:{https}");
    let key = line_server::apikey::ApiKey::generate();
    let instance = Instance::start(&key, &site);
    let mut vars = https_vars(&dir, &cert, https);
    vars.extend([("LINE_UPSTREAM", instance.addr.to_string())]);
    let conf = tools.render("line.conf", &vars);
    let _nginx = tools.start_nginx(&dir, &conf, https);
    let front = Front::new(https, &cert, &key, &site);

    // HTTPS: the page (with the key in its query, as links carry it) and /healthz, with HSTS.
    let page = front
        .get(&format!("/line.html?apikey={}", key.expose()))
        .await;
    assert_eq!(page.status, 200);
    let health = front.get("/healthz").await;
    assert_eq!(health.status, 200);
    let hsts: Vec<_> = health.headers_named("strict-transport-security");
    assert_eq!(hsts, ["max-age=63072000"], "exactly one HSTS header");

    // TLS 1.3 only.
    assert!(
        front.tls12_handshake().await.is_err(),
        "nginx accepted TLS 1.2"
    );

    // A wrong key is refused by line-server, through nginx.
    assert_eq!(front.refused(&"x".repeat(72)).await, 401);

    // A call: two WebSockets on one line exchange SFrame-shaped frames both ways.
    let line = random_line();
    let mut a = front.join(line, RelayMessage::Waiting).await;
    let mut b = front.join(line, RelayMessage::PeerJoined).await;
    assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
    relay_both_ways(&mut a, &mut b, 20).await;

    // The client's address (127.0.0.2) reached line-server in X-Forwarded-For from nginx
    // (127.0.0.1, a trusted proxy), even though the client claimed another one.
    let logs = eventually(|| {
        let logs = instance.logs();
        let n = logs.iter().filter(|l| is_ws_request(l)).count();
        (n >= 3).then_some(logs)
    })
    .await;
    let received: Vec<_> = logs.iter().filter(|l| is_ws_request(l)).collect();
    assert!(received.len() >= 3, "{logs:#?}");
    for entry in &received {
        assert!(entry.contains("peer=127.0.0.2"), "{entry}");
    }

    // One address holds at most 32 connections (here WebSockets, each on its own line): the
    // next is refused with 429, and the key stays out of the logs that say so.
    let crowd = Front {
        client: [127, 0, 0, 3],
        ..front
    };
    let mut held = Vec::new();
    let refusal = loop {
        match crowd.try_join(key.expose(), random_line()).await {
            Ok(ws) => held.push(ws),
            Err(refusal) => break refusal,
        }
        assert!(held.len() <= 32, "an address held {} sockets", held.len());
    };
    assert_eq!((held.len(), refusal.0), (32, 429), "{}", refusal.1);
    drop(held);
    // A burst of requests from one address: the first 40 pass at once, then 429.
    let burst = Front {
        client: [127, 0, 0, 4],
        ..front
    };
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(burst.get("/healthz").await.status);
    }
    assert!(statuses[..40].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");

    // nginx logs a WebSocket when it ends.
    close(a).await;
    close(b).await;
    let access = eventually(|| {
        let access = dir.read("line.access.log");
        access.contains("GET /ws HTTP/1.1\" 101").then_some(access)
    })
    .await;

    // nginx's logs: every request, never the key.
    assert!(access.contains("GET /ws HTTP/1.1\" 101"), "{access}");
    assert!(access.contains("GET /line.html HTTP/1.1\" 200"), "{access}");
    assert!(access.contains("GET /ws HTTP/1.1\" 401"), "{access}");
    for log in ["line.access.log", "line.error.log", "error.log"] {
        let text = dir.read(log);
        assert!(!text.contains(key.expose()), "the key is in {log}:\n{text}");
        assert!(
            !text.contains("apikey"),
            "a query string is in {log}:\n{text}"
        );
    }
}

#[tokio::test]
async fn three_instances_behind_nginx_keep_each_line_on_one_and_survive_losing_one() {
    let Some(tools) = Tools::find() else { return };
    let dir = TempDir::new("line-scaleout");
    let cert = Cert::write(&dir);
    let https = free_port();
    let site = format!("https://localhost:{https}");
    let key = line_server::apikey::ApiKey::generate();
    let mut instances: Vec<Instance> = (0..3).map(|_| Instance::start(&key, &site)).collect();
    let conf = scaleout_conf(&tools, &dir, &cert, https, &instances);
    let _nginx = tools.start_nginx(&dir, &conf, https);
    let front = Front::new(https, &cert, &key, &site);

    // Thirty calls through nginx, each from its own address (nginx and line-server cap what one
    // address may hold, as they would for thirty people).
    let person = |i: usize| Front {
        client: [127, 0, 1, u8::try_from(i).expect("a few people")],
        ..front
    };
    let mut calls = Vec::new();
    for i in 0..30 {
        let line = random_line();
        let mut a = person(i).join(line, RelayMessage::Waiting).await;
        let mut b = person(i).join(line, RelayMessage::PeerJoined).await;
        assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
        relay_both_ways(&mut a, &mut b, 2).await;
        calls.push((line, a, b));
    }

    // Both peers of every line on one instance: by each instance's log of upgrades...
    let placement = eventually(|| {
        let placement = placements(&instances);
        (placement.values().map(Vec::len).sum::<usize>() == 60).then_some(placement)
    })
    .await;
    assert_eq!(placement.len(), 30);
    for (line, on) in &placement {
        assert_eq!(on.len(), 2, "line {line} upgraded {on:?}");
        assert_eq!(on[0], on[1], "line {line} is split across instances {on:?}");
    }
    // ...and by /metrics: 30 lines, 60 sockets, two sockets per line on every instance.
    let counts = settle_metrics(&instances, 30).await;
    for (i, (lines, sockets)) in counts.iter().enumerate() {
        assert!(*lines > 0, "instance {i} got no line: {counts:?}");
        assert_eq!(*sockets, 2 * lines, "instance {i}: {counts:?}");
    }

    // Stop the busiest instance (SIGTERM, as an orchestrator does): its sockets close with 1001.
    let victim = (0..3)
        .max_by_key(|i| counts[*i].0)
        .expect("three instances");
    let before = placement_summary(&placement);
    let moved: Vec<usize> = (0..calls.len())
        .filter(|i| placement[&calls[*i].0.to_string()][0] == victim)
        .collect();
    instances[victim].terminate();
    for &i in &moved {
        let (_, a, b) = &mut calls[i];
        assert_eq!(expect_close(a).await.0, 1001);
        assert_eq!(expect_close(b).await.0, 1001);
    }
    instances[victim].wait_exit(Duration::from_secs(10));

    // Its lines reconnect through nginx to the others and relay again; the rest never noticed.
    let started = Instant::now();
    for &i in &moved {
        let line = calls[i].0;
        let mut a = person(i).join(line, RelayMessage::Waiting).await;
        let b = person(i).join(line, RelayMessage::PeerJoined).await;
        assert_eq!(next_control(&mut a).await, RelayMessage::PeerJoined);
        calls[i].1 = a;
        calls[i].2 = b;
    }
    let reconnect = started.elapsed();
    for (_, a, b) in &mut calls {
        relay_both_ways(a, b, 2).await;
    }
    let survivors: Vec<&Instance> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| &instances[i])
        .collect();
    let counts = settle_metrics_of(&survivors, 30).await;
    for (lines, sockets) in &counts {
        assert_eq!(
            *sockets,
            2 * lines,
            "a line is split after the move: {counts:?}"
        );
    }
    let placement = eventually(|| {
        let placement = placements(&instances);
        let upgrades = placement.values().map(Vec::len).sum::<usize>();
        (upgrades == 60 + 2 * moved.len()).then_some(placement)
    })
    .await;
    for &i in &moved {
        // Upgrades per instance (instances are listed in order, not in time).
        let on = &placement[&calls[i].0.to_string()];
        let after: Vec<usize> = on.iter().copied().filter(|n| *n != victim).collect();
        assert_eq!(on.len() - after.len(), 2, "{on:?}");
        assert_eq!(after.len(), 2, "{on:?}");
        assert_eq!(after[0], after[1], "a moved line is split: {on:?}");
    }
    eprintln!(
        "scale-out: 30 lines on instances {before:?}; stopped instance {victim}, {} lines moved \
         and relayed again ({} reconnects in {reconnect:?}); lines after: {:?}",
        moved.len(),
        2 * moved.len(),
        counts.iter().map(|c| c.0).collect::<Vec<_>>()
    );

    for log in ["line.access.log", "line.error.log", "error.log"] {
        let text = dir.read(log);
        assert!(!text.contains(key.expose()), "the key is in {log}:\n{text}");
    }
}

/// Line id -> the instances that upgraded its sockets (instance by instance).
fn placements(instances: &[Instance]) -> HashMap<String, Vec<usize>> {
    let mut placement: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, instance) in instances.iter().enumerate() {
        for entry in instance.logs() {
            if entry.contains("connection received on line")
                && entry.contains("upgraded")
                && let Some(line) = field(&entry, "line")
            {
                placement.entry(line).or_default().push(i);
            }
        }
    }
    placement
}

fn placement_summary(placement: &HashMap<String, Vec<usize>>) -> [usize; 3] {
    let mut per = [0; 3];
    for on in placement.values() {
        per[on[0]] += 1;
    }
    per
}

/// Polls until the instances' gauges add up to `lines` lines and twice as many sockets.
async fn settle_metrics(instances: &[Instance], lines: u64) -> Vec<(u64, u64)> {
    let all: Vec<&Instance> = instances.iter().collect();
    settle_metrics_of(&all, lines).await
}

async fn settle_metrics_of(instances: &[&Instance], lines: u64) -> Vec<(u64, u64)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut counts = Vec::new();
        for instance in instances {
            let text = instance.metrics().await;
            counts.push((
                gauge(&text, "line_active_lines"),
                gauge(&text, "line_open_connections"),
            ));
        }
        let total: u64 = counts.iter().map(|c| c.0).sum();
        let sockets: u64 = counts.iter().map(|c| c.1).sum();
        if (total, sockets) == (lines, 2 * lines) || Instant::now() > deadline {
            assert_eq!((total, sockets), (lines, 2 * lines), "{counts:?}");
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// line-server's log line for a `/ws` request, upgraded or refused.
fn is_ws_request(line: &str) -> bool {
    line.contains("connection received") || line.contains("connection refused")
}

#[test]
fn the_kubernetes_example_is_safe_as_it_stands() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/line.yaml"
    ))
    .expect("deploy/kubernetes/line.yaml");
    let settings: Vec<&str> = yaml
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let has = |needle: &str| settings.iter().any(|l| l.contains(needle));
    // ingress-nginx's default access log format holds $request, so the query and the key.
    assert!(
        has(r#"nginx.ingress.kubernetes.io/enable-access-log: "false""#),
        "the Ingress would log the API key"
    );
    assert!(has("nginx.ingress.kubernetes.io/limit-connections:"));
    assert!(has("nginx.ingress.kubernetes.io/limit-rps:"));
    // No X-Forwarded-For is believed from a whole network of pods.
    for line in settings.iter().filter(|l| l.contains("TRUSTED_PROXIES")) {
        let value = line.split("value:").nth(1).unwrap_or("");
        for block in value.trim_matches(|c| " \"}".contains(c)).split(',') {
            let prefix = block
                .split_once('/')
                .map_or(32, |(_, p)| p.parse::<u8>().expect("a prefix length"));
            assert!(prefix >= 24, "TRUSTED_PROXIES trusts {block}");
        }
    }
    assert!(has("kind: NetworkPolicy"));
    // The Ingress carries no UDP: pages must not wait out a WebTransport session first.
    assert!(has(r#"{name: NO_WEBTRANSPORT, value: "1"}"#));
}
