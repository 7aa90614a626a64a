// A TCP proxy in front of line-server that keeps every byte the server receives, one stream per
// connection, so the privacy test can show that neither the leaf nor the audio ever reaches it.
// It can also freeze a connection: stop forwarding both ways without closing anything, as a
// network that went away does (a phone leaving Wi-Fi): no FIN, no RST, just nothing.
import net from 'node:net';

export async function startProxy(targetPort) {
  const connections = []; // per connection: { chunks (browser -> server), open, freeze }
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const connection = { chunks: [], open: true, frozen: false };
    connections.push(connection);
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (chunk) => {
      if (!connection.frozen) connection.chunks.push(Buffer.from(chunk));
    });
    client.pipe(upstream);
    upstream.pipe(client);
    connection.freeze = () => {
      connection.frozen = true;
      client.unpipe(upstream);
      upstream.unpipe(client);
      // Stop reading: what either side sends from now on stays in the kernels' buffers, as
      // packets to an address that is gone would.
      client.pause();
      upstream.pause();
    };
    const end = () => {
      connection.open = false;
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  // The first request's head: it is in the first few kilobytes of the stream.
  const head = (c) => {
    let n = 0;
    const first = [];
    for (const chunk of c.chunks) {
      first.push(chunk);
      if ((n += chunk.length) >= 16384) break;
    }
    const buf = Buffer.concat(first);
    const end = buf.indexOf('\r\n\r\n');
    return end < 0 ? '' : buf.subarray(0, end).toString('latin1');
  };
  return {
    port: server.address().port,
    /** Every connection's received bytes so far, one buffer each. */
    streams: () => connections.map((c) => Buffer.concat(c.chunks)),
    /** Every connection's first request: its index, request line, whether it asked for a
     *  WebSocket, and whether it is still open and forwarding. */
    requests: () =>
      connections.map((c, index) => {
        const h = head(c);
        return { index, request: h.split('\r\n')[0], upgrade: /^upgrade:\s*websocket/im.test(h), open: c.open && !c.frozen };
      }),
    /** Stops forwarding on connection `index` without closing it. */
    freeze: (index) => connections[index].freeze(),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(resolve);
      }),
  };
}
