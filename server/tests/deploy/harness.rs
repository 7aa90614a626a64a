//! nginx, line-server instances and WSS clients for the deployment tests.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use line_protocol::control::RelayMessage;
use line_protocol::line_id::LineId;
use line_server::apikey::ApiKey;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

#[path = "../support/http.rs"]
mod http;
#[path = "../support/relay.rs"]
mod relay;
#[path = "../support/wt_records.rs"]
mod wt_records;
pub(crate) use http::{HttpResponse, http_get};
pub(crate) use relay::{expect_close, frame, join_params, next_binary, next_control, random_line};
pub(crate) use wt_records::Records;

/// How long a test waits for something that should happen at once.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// Where the client connects from: another loopback address than nginx's own 127.0.0.1, so
/// line-server's log tells the client from the proxy.
pub(crate) const CLIENT_IP: [u8; 4] = [127, 0, 0, 2];

pub(crate) type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// nginx and envsubst, found on this machine.
pub(crate) struct Tools {
    nginx: PathBuf,
    envsubst: PathBuf,
}

fn which(name: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .chain(also.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

impl Tools {
    /// The tools, or `None` (with a loud message) when one is missing outside CI.
    pub(crate) fn find() -> Option<Self> {
        let nginx = std::env::var_os("NGINX")
            .map(PathBuf::from)
            .or_else(|| which("nginx", &["/usr/sbin/nginx"]));
        let envsubst = which("envsubst", &[]);
        match (nginx, envsubst) {
            (Some(nginx), Some(envsubst)) => Some(Self { nginx, envsubst }),
            _ => {
                let message = "nginx or envsubst is missing: the deployment tests need both \
                               (`just setup` installs nginx and gettext-base)";
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{message}; CI must run these tests"
                );
                // Straight to stderr: the test harness captures eprintln! of passing tests.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n\n").as_bytes(),
                );
                None
            }
        }
    }

    /// `deploy/nginx/<name>` through envsubst with exactly these variables, as the README does.
    pub(crate) fn render(&self, name: &str, vars: &[(&str, String)]) -> String {
        let template = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/nginx")
            .join(name);
        let list = vars
            .iter()
            .map(|(k, _)| format!("${{{k}}}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = Command::new(&self.envsubst);
        command
            .arg(list)
            .stdin(std::fs::File::open(&template).expect("the template exists"))
            .stdout(Stdio::piped());
        for (k, v) in vars {
            command.env(k, v);
        }
        let out = command.output().expect("envsubst runs");
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let body: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !body.contains("${"),
            "{name} has a variable the test does not set:\n{body}"
        );
        text
    }

    /// What nginx.conf needs at its top level for a `stream {}` block: nothing when the module
    /// is built in, a `load_module` line when it is a dynamic module that is installed; `None`
    /// (with a loud message, or a failure in CI) when it is neither.
    pub(crate) fn stream_module(&self) -> Option<String> {
        let out = Command::new(&self.nginx)
            .arg("-V")
            .output()
            .expect("nginx -V runs");
        // nginx -V prints its configure arguments on stderr.
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let args: Vec<&str> = text.split_whitespace().collect();
        if args.contains(&"--with-stream") {
            return Some(String::new());
        }
        if args.contains(&"--with-stream=dynamic") {
            let modules = args
                .iter()
                .find_map(|a| a.strip_prefix("--modules-path="))
                .unwrap_or("/usr/lib/nginx/modules");
            let module = Path::new(modules).join("ngx_stream_module.so");
            if module.is_file() {
                return Some(format!("load_module {};\n", module.display()));
            }
        }
        let message = "nginx's stream module is missing: the UDP scale-out test needs it \
                       (`just setup` installs libnginx-mod-stream)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{message}; CI must run this test"
        );
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n\n").as_bytes(),
        );
        None
    }

    /// nginx with its own prefix, pid and logs under `dir`, the rendered file in its http block.
    pub(crate) fn start_nginx(&self, dir: &TempDir, conf: &str, port: u16) -> Nginx {
        self.start_nginx_with_stream(dir, conf, None, port)
    }

    /// As [`Tools::start_nginx`], and `stream`: (what [`Tools::stream_module`] gave, a rendered
    /// `stream {}` block) included at nginx.conf's top level, as the scale-out's UDP half says.
    pub(crate) fn start_nginx_with_stream(
        &self,
        dir: &TempDir,
        conf: &str,
        stream: Option<(&str, &str)>,
        port: u16,
    ) -> Nginx {
        let d = dir.path().display();
        std::fs::write(dir.path().join("line.conf"), conf).expect("write line.conf");
        // With UDP, two workers: each client's packets must stay in one session even so.
        let (load, include, workers) = match stream {
            Some((load, block)) => {
                std::fs::write(dir.path().join("line-udp.conf"), block)
                    .expect("write line-udp.conf");
                (load.to_owned(), format!("include {d}/line-udp.conf;\n"), 2)
            }
            None => (String::new(), String::new(), 1),
        };
        let main = format!(
            "{load}\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             worker_processes {workers};\n\
             events {{ worker_connections 512; }}\n\
             {include}\
             http {{\n\
             \x20   client_body_temp_path {d}/body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   access_log off;\n\
             \x20   include {d}/line.conf;\n\
             }}\n"
        );
        let main_path = dir.path().join("nginx.conf");
        std::fs::write(&main_path, main).expect("write nginx.conf");
        let args = |command: &mut Command| {
            command
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&main_path)
                .arg("-e")
                .arg(dir.path().join("error.log"));
        };
        let mut test = Command::new(&self.nginx);
        args(&mut test);
        let out = test.arg("-t").output().expect("nginx -t runs");
        assert!(
            out.status.success(),
            "nginx -t refuses the config:\n{}\n{conf}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut command = Command::new(&self.nginx);
        args(&mut command);
        let child = command
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx { child };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx never listened on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}

/// A running nginx; stopped (SIGQUIT, then SIGKILL) on drop.
pub(crate) struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        signal(self.child.id(), "-QUIT");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// A directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// A file's text, or "" when it does not exist.
    pub(crate) fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `localhost`, written where nginx reads it.
pub(crate) struct Cert {
    der: CertificateDer<'static>,
    pub(crate) cert_path: PathBuf,
    pub(crate) key_path: PathBuf,
}

/// The variables every shipped HTTPS configuration takes: its name, addresses on loopback (the
/// HTTP one on a free port), certificate and log directory. Add the upstreams.
pub(crate) fn https_vars(dir: &TempDir, cert: &Cert, https: u16) -> Vec<(&'static str, String)> {
    vec![
        ("LINE_SERVER_NAME", "localhost".to_owned()),
        ("LINE_LISTEN_HTTPS", format!("127.0.0.1:{https}")),
        ("LINE_LISTEN_HTTP", format!("127.0.0.1:{}", free_port())),
        ("LINE_CERT", cert.cert_path.display().to_string()),
        ("LINE_KEY", cert.key_path.display().to_string()),
        ("LINE_LOG_DIR", dir.path().display().to_string()),
    ]
}

/// `line-scaleout.conf` rendered for three `instances` behind nginx's HTTPS `port`.
pub(crate) fn scaleout_conf(
    tools: &Tools,
    dir: &TempDir,
    cert: &Cert,
    port: u16,
    instances: &[Instance],
) -> String {
    let [one, two, three] = instances else {
        panic!("the scale-out template names three instances");
    };
    let mut vars = https_vars(dir, cert, port);
    vars.extend([
        ("LINE_UPSTREAM_1", one.addr.to_string()),
        ("LINE_UPSTREAM_2", two.addr.to_string()),
        ("LINE_UPSTREAM_3", three.addr.to_string()),
    ]);
    tools.render("line-scaleout.conf", &vars)
}

impl Cert {
    pub(crate) fn write(dir: &TempDir) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
        let cert_path = dir.path().join("fullchain.pem");
        let key_path = dir.path().join("privkey.pem");
        std::fs::write(&cert_path, made.cert.pem()).expect("write cert");
        std::fs::write(&key_path, made.signing_key.serialize_pem()).expect("write key");
        Self {
            der: made.cert.der().clone(),
            cert_path,
            key_path,
        }
    }

    fn connector(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// A port that was free a moment ago (nginx cannot listen on port 0 and tell us).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A UDP port that was free a moment ago.
pub(crate) fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free udp port")
        .port()
}

/// The real `line-server` binary on loopback, plain HTTP, trusting nginx's X-Forwarded-For.
pub(crate) struct Instance {
    child: Child,
    pub(crate) addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    pub(crate) fn start(key: &ApiKey, site: &str) -> Self {
        Self::start_with(key, site, &[])
    }

    /// As [`Instance::start`], with more settings in its environment.
    pub(crate) fn start_with(key: &ApiKey, site: &str, settings: &[(&str, String)]) -> Self {
        // line-server logs the address it was asked for, so ask for a port, not port 0.
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_line-server"));
        for var in [
            "PORT",
            "TLS_CERT",
            "TLS_KEY",
            "ALLOWED_ORIGINS",
            "WWW",
            "RUST_LOG",
            "WEBTRANSPORT_PORT",
            "WEBTRANSPORT_PUBLIC_PORT",
            "WEBTRANSPORT_SCALEOUT_PORTS",
            "NO_WEBTRANSPORT",
        ] {
            command.env_remove(var);
        }
        command.envs(settings.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .env("APIKEY", key.expose())
            .env("SITEURL", site)
            .env("BIND", "127.0.0.1")
            .env("TRUSTED_PROXIES", "127.0.0.1")
            // Line ids are logged at debug only; the scale-out test reads them to see placement.
            .env("LOG_LEVEL", "line_server=debug,info")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("line-server starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening") {
                    let _ = tx.send(());
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        rx.recv_timeout(PATIENCE)
            .expect("line-server says it listens");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Self { child, addr, logs }
    }

    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// SIGTERM: close every socket with 1001 and exit.
    pub(crate) fn terminate(&self) {
        signal(self.child.id(), "-TERM");
    }

    pub(crate) fn wait_exit(&mut self, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "line-server exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "line-server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its `/metrics`, asked directly (not through nginx, which would hash to one instance).
    pub(crate) async fn metrics(&self) -> String {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        http_get(stream, "localhost", "/metrics", &[])
            .await
            .body_text()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name=value` (or `name="value"`) from a tracing log line.
pub(crate) fn field(line: &str, name: &str) -> Option<String> {
    let rest = line.split(&format!(" {name}=")).nth(1)?;
    let value = rest.split(' ').next()?.trim_matches('"');
    Some(value.to_owned())
}

/// The integer value of a Prometheus gauge or counter without labels.
pub(crate) fn gauge(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

/// nginx as a browser sees it: HTTPS on localhost, connecting from `client` (a loopback
/// address: [`CLIENT_IP`] unless a test plays several people).
#[derive(Clone, Copy)]
pub(crate) struct Front<'a> {
    pub(crate) client: [u8; 4],
    pub(crate) port: u16,
    pub(crate) cert: &'a Cert,
    pub(crate) key: &'a ApiKey,
    pub(crate) site: &'a str,
}

impl<'a> Front<'a> {
    /// The front at nginx's HTTPS `port`, as the test's usual client address.
    pub(crate) fn new(port: u16, cert: &'a Cert, key: &'a ApiKey, site: &'a str) -> Self {
        Self {
            client: CLIENT_IP,
            port,
            cert,
            key,
            site,
        }
    }
}

impl Front<'_> {
    async fn tcp(&self) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((self.client, 0)))
            .expect("bind a loopback address");
        socket
            .connect(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await
            .expect("connect to nginx")
    }

    async fn tls(&self) -> TlsStream<TcpStream> {
        let tcp = self.tcp().await;
        self.cert
            .connector(&[&rustls::version::TLS13])
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("tls handshake with nginx")
    }

    /// A TLS 1.2-only handshake.
    pub(crate) async fn tls12_handshake(&self) -> std::io::Result<()> {
        let tcp = self.tcp().await;
        self.cert
            .connector(&[&rustls::version::TLS12])
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .map(drop)
    }

    pub(crate) async fn get(&self, path: &str) -> HttpResponse {
        http_get(self.tls().await, "localhost", path, &[]).await
    }

    fn request(&self, apikey: &str, line: LineId) -> tungstenite::handshake::client::Request {
        let url = format!(
            "wss://localhost:{}/ws?apikey={apikey}&{}",
            self.port,
            join_params(line)
        );
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(url).expect("url");
        let headers = request.headers_mut();
        // What a browser on the page sends; and a forged address nginx must not pass as the client.
        headers.insert("origin", self.site.parse().expect("origin"));
        headers.insert("x-forwarded-for", "203.0.113.66".parse().expect("xff"));
        request
    }

    /// Joins `line` through nginx and checks the first control message.
    pub(crate) async fn join(&self, line: LineId, expect: RelayMessage) -> Wss {
        let request = self.request(self.key.expose(), line);
        let (mut ws, _) = tokio_tungstenite::client_async(request, self.tls().await)
            .await
            .expect("wss upgrade through nginx");
        assert_eq!(next_control(&mut ws).await, expect);
        ws
    }

    /// The status with which the upgrade is refused for this key.
    pub(crate) async fn refused(&self, apikey: &str) -> u16 {
        self.try_join(apikey, random_line())
            .await
            .expect_err("upgrade accepted")
            .0
    }

    /// Joins `line` with `apikey`, or the status and body of the refusal.
    pub(crate) async fn try_join(&self, apikey: &str, line: LineId) -> Result<Wss, (u16, String)> {
        let request = self.request(apikey, line);
        match tokio_tungstenite::client_async(request, self.tls().await).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(response)) => Err((
                response.status().as_u16(),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            )),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// `n` frames a -> b and `n` frames b -> a, each arriving unchanged.
pub(crate) async fn relay_both_ways(a: &mut Wss, b: &mut Wss, n: u64) {
    for ctr in 0..n {
        let f = frame(1, ctr, 1920);
        a.send(Message::binary(f.clone())).await.expect("send");
        assert_eq!(next_binary(b).await, f);
        let f = frame(2, ctr, 400);
        b.send(Message::binary(f.clone())).await.expect("send");
        assert_eq!(next_binary(a).await, f);
    }
}

/// Polls `check` until it gives a value (log files and log lines arrive a little later).
pub(crate) async fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Closes a WebSocket and reads until the server's close reply.
pub(crate) async fn close(mut ws: Wss) {
    ws.close(None).await.expect("send close");
    while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, ws.next()).await {}
}
