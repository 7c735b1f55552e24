// One rank of the netns test: reports its environment and the addresses it sees, pings rank 0's
// address over TCP (connect to the peer's listener), and optionally dies (NETNS_DIE=<rank>) or
// hangs (others), to check that the helper ends the world and tears down.
import { createConnection, createServer } from 'node:net';
import { networkInterfaces } from 'node:os';

const rank = Number(process.env.RANK);
const addrs = Object.values(networkInterfaces()).flatMap((l) => (l ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address));
if (process.env.NETNS_DIE !== undefined) {
  if (Number(process.env.NETNS_DIE) === rank) process.exit(3);
  setInterval(() => {}, 1000);
} else if (rank === 0) {
  let left = Number(process.env.WORLD_SIZE) - 1;
  const server = createServer((s) => {
    s.end('hello');
    if (--left === 0) server.close();
  });
  server.listen(29600, process.env.DS_COMM_IFADDR, () => console.log(JSON.stringify({ rank, addrs, env: pick() })));
} else {
  const tryConnect = (left: number) => {
    const c = createConnection({ host: process.env.MASTER_ADDR!, port: 29600 });
    let got = '';
    c.on('data', (d) => (got += d.toString()));
    c.on('end', () => console.log(JSON.stringify({ rank, addrs, env: pick(), got })));
    c.on('error', () => (left > 0 ? setTimeout(() => tryConnect(left - 1), 100) : process.exit(4)));
  };
  tryConnect(50);
}

function pick() {
  const e = process.env;
  return { host: e.DS_HOST_ID, ifaddr: e.DS_COMM_IFADDR, transport: e.DS_COMM_TRANSPORT, master: e.MASTER_ADDR, local: e.LOCAL_SIZE };
}
