import net from 'node:net';

export interface RawServer {
  url: URL;
  /** TCP connections accepted so far. */
  connections(): number;
  /** Every request head read, in order. */
  requests: string[];
  /** Closes the server and every connection it holds. */
  close(): void;
}

/**
 * A TCP server whose `answer` writes the raw response for each request head it reads: for HTTP
 * client tests that need exact bytes on the wire (framing, interim answers, cut bodies, closes).
 */
export async function rawServer(answer: (socket: net.Socket, head: string, n: number) => void): Promise<RawServer> {
  let connections = 0;
  let n = 0;
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = '';
    socket.on('data', (d) => {
      buffered += d.toString('latin1');
      let end: number;
      while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        requests.push(head);
        answer(socket, head, n++);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: new URL(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/file.bin`),
    connections: () => connections,
    requests,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
