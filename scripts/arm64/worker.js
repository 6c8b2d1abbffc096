'use strict';

// A cluster worker as users write them: an HTTP server on 127.0.0.1 answering `pid <pid>`. Once listening it tells
// the primary which socket it holds (fd → socket:[inode]): none of its own under round-robin, one each under
// reuseport. `_handle.fd` is Node's, read for this check only.
const fs = require('node:fs');
const http = require('node:http');

const server = http.createServer((req, res) => res.end(`pid ${process.pid}`));
server.listen(0, '127.0.0.1', () => {
  const fd = server._handle?.fd;
  process.send({ socket: typeof fd === 'number' && fd >= 0 ? fs.readlinkSync(`/proc/self/fd/${fd}`) : null });
});
