//! The scale-out's UDP half (`deploy/nginx/line-scaleout-udp.conf`): WebTransport calls through
//! nginx's `stream` forwarding, each line on one instance.

use std::collections::HashMap;
use std::net::SocketAddr;

use line_protocol::control::RelayMessage;
use line_protocol::header::Header;
use line_protocol::line_id::LineId;
use line_protocol::sframe::TAG_LEN;
use line_protocol::webtransport::{MAX_DATAGRAM_FRAME_LEN, PATH};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use wtransport::endpoint::ConnectOptions;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint};

use crate::harness::*;

/// Instances behind nginx.
const INSTANCES: usize = 3;

#[tokio::test]
async fn webtransport_through_nginx_udp_keeps_each_line_on_one_instance() {
    let Some(tools) = Tools::find() else { return };
    let Some(load_stream) = tools.stream_module() else {
        return;
    };
    let dir = TempDir::new("line-scaleout-udp");
    let cert = Cert::write(&dir);
    let https = free_port();
    let site = format!("https://localhost:{https}");
    let key = line_server::apikey::ApiKey::generate();
    // nginx's public UDP port per instance, and the port each instance listens on: different
    // numbers, as behind any forwarding that is not one-to-one.
    let public: Vec<u16> = (0..INSTANCES).map(|_| free_udp_port()).collect();
    let listening: Vec<u16> = (0..INSTANCES).map(|_| free_udp_port()).collect();
    let all_public = public
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let instances: Vec<Instance> = (0..INSTANCES)
        .map(|i| {
            Instance::start_with(
                &key,
                &site,
                &[
                    ("WEBTRANSPORT_PORT", listening[i].to_string()),
                    ("WEBTRANSPORT_PUBLIC_PORT", public[i].to_string()),
                    ("WEBTRANSPORT_SCALEOUT_PORTS", all_public.clone()),
                ],
            )
        })
        .collect();
    let conf = scaleout_conf(&tools, &dir, &cert, https, &instances);
    let udp = tools.render(
        "line-scaleout-udp.conf",
        &[
            ("LINE_UDP_LISTEN_1", format!("127.0.0.1:{}", public[0])),
            ("LINE_UDP_LISTEN_2", format!("127.0.0.1:{}", public[1])),
            ("LINE_UDP_LISTEN_3", format!("127.0.0.1:{}", public[2])),
            ("LINE_UDP_UPSTREAM_1", format!("127.0.0.1:{}", listening[0])),
            ("LINE_UDP_UPSTREAM_2", format!("127.0.0.1:{}", listening[1])),
            ("LINE_UDP_UPSTREAM_3", format!("127.0.0.1:{}", listening[2])),
            ("LINE_LOG_DIR", dir.path().display().to_string()),
        ],
    );
    let _nginx = tools.start_nginx_with_stream(&dir, &conf, Some((&load_stream, &udp)), https);
    let front = Front::new(https, &cert, &key, &site);

    // The page, whichever instance serves it, may open WebTransport to every instance's port.
    let page = front
        .get(&format!("/line.html?apikey={}", key.expose()))
        .await;
    assert_eq!(page.status, 200);
    let csp = page.headers_named("content-security-policy").join(" ");
    for port in &public {
        assert!(
            csp.contains(&format!(" https://localhost:{port}")),
            "the page's policy leaves out port {port}: {csp}"
        );
    }
    // The key rules of /webtransport are those of /ws; a line that is no line id is refused
    // with /ws's reason.
    let wrong = front.get("/webtransport?apikey=wrong&line=x").await;
    assert_eq!(wrong.status, 401, "{}", wrong.body_text());
    let bad = front
        .get(&format!("/webtransport?apikey={}&line=x", key.expose()))
        .await;
    assert_eq!(
        (bad.status, bad.body_text().trim()),
        (400, "line must be 22 characters of base64url")
    );

    // Lines drawn until every instance has one (nginx's hash decides, and /webtransport, asked
    // through it with the line, names the instance's public port).
    let seed: u64 = rand::random();
    eprintln!("scale-out udp: lines and frame sizes from seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut line_of: HashMap<usize, LineId> = HashMap::new();
    for draw in 0..60u8 {
        let line = LineId::from_bytes(rng.random());
        let asker = Front {
            client: [127, 0, 2, draw],
            ..front
        };
        let (port, _) = endpoint_for(&asker, line).await;
        let instance = public
            .iter()
            .position(|p| *p == port)
            .unwrap_or_else(|| panic!("/webtransport named {port}, not one of nginx's {public:?}"));
        line_of.entry(instance).or_insert(line);
        if line_of.len() == INSTANCES {
            break;
        }
    }
    assert_eq!(line_of.len(), INSTANCES, "60 lines all on {line_of:?}");

    // A call on each: two peers, each asking /webtransport through nginx's HTTPS and opening its
    // session through nginx's UDP port, then datagram-sized frames both ways.
    let bodies = TAG_LEN..=MAX_DATAGRAM_FRAME_LEN - Header::MAX_LEN;
    let mut calls = Vec::new();
    for (call, (&instance, &line)) in line_of.iter().enumerate() {
        let person = Front {
            client: [127, 0, 3, u8::try_from(call).expect("a few calls")],
            ..front
        };
        let (port_a, a, mut records_a) = join(&person, line, RelayMessage::Waiting).await;
        let (port_b, b, _records_b) = join(&person, line, RelayMessage::PeerJoined).await;
        assert_eq!(records_a.next_control().await, RelayMessage::PeerJoined);
        assert_eq!(
            (port_a, port_b),
            (public[instance], public[instance]),
            "line {line}: both peers sent to instance {instance}'s port"
        );
        for ctr in 0..10 {
            let f = frame(1, ctr, rng.random_range(bodies.clone()));
            a.send_datagram(f.clone()).expect("datagram a -> b");
            assert_eq!(next_datagram(&b).await, f, "line {line}: a -> b");
            let f = frame(2, ctr, rng.random_range(bodies.clone()));
            b.send_datagram(f.clone()).expect("datagram b -> a");
            assert_eq!(next_datagram(&a).await, f, "line {line}: b -> a");
        }
        calls.push((line, instance, a, b));
    }

    // Each instance's log: both sessions of its line, both from nginx's address (the client's
    // own, 127.0.3.x, never reached it: the session went through nginx's UDP forwarding).
    let sessions = eventually(|| {
        let sessions = sessions(&instances);
        (sessions.values().map(Vec::len).sum::<usize>() == 2 * INSTANCES).then_some(sessions)
    })
    .await;
    for (line, instance, _, _) in &calls {
        let on = &sessions[&line.to_string()];
        assert_eq!(
            on.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [*instance, *instance],
            "line {line}'s sessions"
        );
        for (_, peer) in on {
            assert_eq!(
                peer, "127.0.0.1",
                "line {line}: a session not through nginx"
            );
        }
    }
    let per_instance: Vec<usize> = (0..INSTANCES)
        .map(|i| calls.iter().filter(|c| c.1 == i).count())
        .collect();
    eprintln!(
        "scale-out udp: {} WebTransport calls through nginx's UDP ports {public:?}, lines per \
         instance {per_instance:?}, 10 frames each way per call",
        calls.len()
    );
    for (_, _, a, b) in calls {
        a.close(0u32.into(), b"");
        b.close(0u32.into(), b"");
    }
    for log in [
        "line.access.log",
        "line.error.log",
        "line.udp.error.log",
        "error.log",
    ] {
        let text = dir.read(log);
        assert!(!text.contains(key.expose()), "the key is in {log}:\n{text}");
    }
}

/// `/webtransport?apikey=..&line=..` asked through nginx: the port and the certificate hash.
async fn endpoint_for(front: &Front<'_>, line: LineId) -> (u16, [u8; 32]) {
    let answer = front
        .get(&format!(
            "/webtransport?apikey={}&line={line}",
            front.key.expose()
        ))
        .await;
    let body = answer.body_text();
    assert_eq!(answer.status, 200, "/webtransport: {body}");
    let port = body
        .split("\"port\":")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a port in {body}"));
    let hex = body
        .split("\"certificate_hashes\":[\"")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .unwrap_or_else(|| panic!("the hash of the instance's own certificate in {body}"));
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    (port, hash)
}

/// As a browser joins over WebTransport behind nginx: the endpoint from `/webtransport`, then a
/// session to that port of nginx's, pinning the hash, from the person's address.
async fn join(front: &Front<'_>, line: LineId, expect: RelayMessage) -> (u16, Connection, Records) {
    let (port, hash) = endpoint_for(front, line).await;
    let config = ClientConfig::builder()
        .with_bind_address(SocketAddr::from((front.client, 0)))
        .with_server_certificate_hashes([Sha256Digest::new(hash)])
        .build();
    let endpoint = Endpoint::client(config).expect("client endpoint");
    let url = format!(
        "https://127.0.0.1:{port}{PATH}?apikey={}&{}",
        front.key.expose(),
        join_params(line)
    );
    let options = ConnectOptions::builder(url)
        .add_header("origin", front.site)
        .build();
    let connection = tokio::time::timeout(PATIENCE, endpoint.connect(options))
        .await
        .expect("the session opens in time")
        .expect("a WebTransport session through nginx's UDP port");
    let stream = tokio::time::timeout(PATIENCE, connection.accept_uni())
        .await
        .expect("the relay opens its stream in time")
        .expect("the relay opens its stream");
    let mut records = Records::new(stream);
    assert_eq!(records.next_control().await, expect);
    (port, connection, records)
}

async fn next_datagram(connection: &Connection) -> Vec<u8> {
    tokio::time::timeout(PATIENCE, connection.receive_datagram())
        .await
        .expect("a datagram in time")
        .expect("the session is open")
        .payload()
        .to_vec()
}

/// Line id -> (instance, peer address as it saw it) of each WebTransport session it accepted.
fn sessions(instances: &[Instance]) -> HashMap<String, Vec<(usize, String)>> {
    let mut sessions: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    for (i, instance) in instances.iter().enumerate() {
        for entry in instance.logs() {
            if entry.contains("connection received on line")
                && entry.contains("outcome=\"session\"")
                && let (Some(line), Some(peer)) = (field(&entry, "line"), field(&entry, "peer"))
            {
                sessions.entry(line).or_default().push((i, peer));
            }
        }
    }
    sessions
}
