// A TCP proxy in front of line-server that keeps every byte the server receives, one stream per
// connection, so the privacy test can show that neither the leaf nor the audio ever reaches it.
import net from 'node:net';

export async function startProxy(targetPort) {
  const connections = []; // per connection: the chunks browsers sent towards the server
  const sockets = new Set();
  const server = net.createServer((client) => {
    const chunks = [];
    connections.push(chunks);
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (chunk) => chunks.push(Buffer.from(chunk)));
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
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
  return {
    port: server.address().port,
    /** Every connection's received bytes so far, one buffer each. */
    streams: () => connections.map((chunks) => Buffer.concat(chunks)),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(resolve);
      }),
  };
}
