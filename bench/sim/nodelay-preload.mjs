// Benchmark-only preload (`bench:server -- --server-nodelay`): sets TCP_NODELAY on every
// accepted socket of the server process, to show the effect of the one-line fix proposed for
// src/server/server.ts (tls.createServer({ noDelay: true })). Not used by default.
import net from 'node:net';
const orig = net.Server.prototype.emit;
net.Server.prototype.emit = function (ev, sock, ...rest) {
  if (ev === 'connection' && sock && typeof sock.setNoDelay === 'function') sock.setNoDelay(true);
  return orig.call(this, ev, sock, ...rest);
};
