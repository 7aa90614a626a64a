// The relay most people would write for line, as a benchmark baseline (BENCHMARKS.md, Goals): Node.js with the
// `ws` package and line-server's wire. GET /ws?apikey=KEY&line=LINE_ID upgrades (401 wrong key,
// 400 bad line id, 409 when the line has two peers); the first peer hears {"type":"waiting"}, both
// hear {"type":"peer-joined"} when the second arrives, the one who stays hears {"type":"peer-left"};
// binary frames go unchanged to the other peer, text frames close with 1003.
// What it leaves out, as a minimal relay would: line-server's SFrame header check, its bounded
// drop-oldest queues, rate limiting, Origin policy, metrics. Never deploy it.
//
// Env: APIKEY (required), PORT (default 7778), BIND (default 127.0.0.1).
import { createServer } from "node:http";
import { timingSafeEqual } from "node:crypto";
import { WebSocketServer } from "ws";

const key = Buffer.from(process.env.APIKEY ?? "");
if (key.length === 0) {
  console.error("node-ws relay: APIKEY is not set");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 7778);
const bind = process.env.BIND ?? "127.0.0.1";
const MAX_FRAME_LEN = 32 * 1024;
const LINE_ID = /^[A-Za-z0-9_-]{22}$/;

/** line id -> the slots of its peers ({ ws } once upgraded). */
const lines = new Map();

const keyMatches = (given) => {
  const b = Buffer.from(given ?? "");
  return b.length === key.length && timingSafeEqual(b, key);
};

const refuse = (socket, status, reason) => {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: ${reason.length}\r\nConnection: close\r\n\r\n${reason}`);
};

const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_LEN, perMessageDeflate: false });
const server = createServer((_req, res) => {
  res.writeHead(404).end("not found");
});

server.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url, "http://relay");
  if (url.pathname !== "/ws") return refuse(socket, 404, "Not Found");
  if (!keyMatches(url.searchParams.get("apikey"))) return refuse(socket, 401, "Unauthorized");
  const line = url.searchParams.get("line") ?? "";
  if (!LINE_ID.test(line)) return refuse(socket, 400, "Bad Request");
  const peers = lines.get(line) ?? [];
  if (peers.length >= 2) return refuse(socket, 409, "Conflict: this line already has two people");
  // Reserve the slot before the upgrade completes, so two third peers cannot both get in.
  const slot = { ws: null };
  peers.push(slot);
  lines.set(line, peers);
  socket.on("error", () => leave(line, slot));
  wss.handleUpgrade(req, socket, head, (ws) => {
    slot.ws = ws;
    join(line, slot);
  });
});

const other = (line, slot) => (lines.get(line) ?? []).find((s) => s !== slot && s.ws);

function join(line, slot) {
  const { ws } = slot;
  const peer = other(line, slot);
  if (peer) {
    const joined = JSON.stringify({ type: "peer-joined" });
    peer.ws.send(joined);
    ws.send(joined);
  } else {
    ws.send(JSON.stringify({ type: "waiting" }));
  }
  ws.on("message", (data, isBinary) => {
    if (!isBinary) return ws.close(1003, "peers talk only in encrypted binary frames");
    other(line, slot)?.ws.send(data, { binary: true });
  });
  ws.on("close", () => leave(line, slot));
  ws.on("error", () => leave(line, slot));
}

function leave(line, slot) {
  const peers = lines.get(line);
  if (!peers || !peers.includes(slot)) return;
  const rest = peers.filter((s) => s !== slot);
  if (rest.length === 0) lines.delete(line);
  else lines.set(line, rest);
  for (const s of rest) s.ws?.send(JSON.stringify({ type: "peer-left" }));
}

server.listen(port, bind, () => console.error(`node-ws relay listening on ${bind}:${port}`));
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
