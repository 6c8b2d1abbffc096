'use strict';

// Handles (Node's handleConversion in lib/internal/child_process.js). The core sends an fd with its envelope and
// keeps a duplicate until the peer's ACK; here a handle object gives up its fd, and a received fd becomes an object.
// Each type has `fd(handle)`, optionally `envelope(envelope, handle, options, end)` and `postSend(handle, options)`,
// and `got(envelope, fd, end)`; `end` is the channel end the handle crosses.

const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const process = require('node:process');
const native = require('./binding');
const { makeError, errnoException } = require('./errors');
const nodeVersion = require('./node_version');
const { socketList } = require('./socket_list');

function nop() {}

let wraps;
// Node's raw handle classes, for the 'Native' kinds.
function handleWraps() {
  if (!wraps) {
    const { TCP, constants: tcp } = process.binding('tcp_wrap');
    const { Pipe, constants: pipe } = process.binding('pipe_wrap');
    const { UDP } = process.binding('udp_wrap');
    wraps = { TCP, Pipe, UDP, tcpSocket: tcp.SOCKET, pipeSocket: pipe.SOCKET };
  }
  return wraps;
}

let httpCommon;
// node:_http_common, loaded at the first socket sent (not at start: a parent that sends none does not pay for it) and
// kept, instead of a require() per socket (~0.8 µs each on Node 26, through Module._load).
function httpParsers() {
  if (!httpCommon) httpCommon = require('node:_http_common');
  return httpCommon;
}

// net.BoundSocket crosses a channel as it crosses to a worker thread (Node's handleConversion does the same): its
// worker_threads transfer hooks give up its TCP handle and build one from a received handle. They are symbols on its
// prototype, found by their names; null where this Node has no BoundSocket.
let boundSocketHooks;
function boundSocketTransfer() {
  if (boundSocketHooks === undefined) {
    const BoundSocket = nodeVersion.boundSocket();
    const symbols = BoundSocket ? Object.getOwnPropertySymbols(BoundSocket.prototype) : [];
    const named = (name) => symbols.find((sym) => sym.description === name);
    const transfer = named('messaging_transfer_symbol');
    const deserialize = named('messaging_deserialize_symbol');
    boundSocketHooks = transfer && deserialize ? { BoundSocket, transfer, deserialize } : null;
  }
  return boundSocketHooks;
}

function dgramHandle(socket) {
  const state = Object.getOwnPropertySymbols(socket).find((sym) => sym.description === 'state symbol');
  return state && socket[state] ? socket[state].handle : undefined;
}

// Closes an fd that could not become a handle, so none leaks.
function closeFd(fd) {
  try {
    fs.closeSync(fd);
  } catch {
    // Already closed by whatever failed.
  }
}

function openWrap(handle, fd) {
  const err = handle.open(fd);
  if (err) throw errnoException(err, 'open');
  return handle;
}

const HANDLE_TYPES = {
  'net.Socket': {
    fd: (socket) => (socket._handle ? socket._handle.fd : undefined),
    // A socket that came from a net.Server still counts for it in the peer (Node's SocketList).
    envelope(envelope, socket, options, end) {
      if (socket.server) {
        envelope.key = socket.server._connectionKey;
        const { list, created } = socketList('send', end, envelope.key);
        if (created) socket.server._setupWorker(list);
        // Act like the socket is detached.
        if (!options.keepOpen) socket.server._connections--;
      }
    },
    // The socket is handed over: detach it now; the core's duplicate keeps the connection open until the ACK.
    postSend(socket, options) {
      if (options.keepOpen) return;
      const handle = socket._handle;
      handle.onread = nop;
      socket._handle = null;
      socket.setTimeout(0);
      const { freeParser, HTTPParser } = httpParsers();
      if (socket.parser && socket.parser instanceof HTTPParser) {
        freeParser(socket.parser, null, socket);
        if (socket._httpMessage) socket._httpMessage.detachSocket(socket);
      }
      handle.close();
    },
    got(envelope, fd, end) {
      const socket = new net.Socket({ fd, readable: true, writable: true });
      if (envelope.key) socketList('got', end, envelope.key).list.add({ socket });
      return socket;
    },
  },
  'net.Server': {
    fd: (server) => (server._handle ? server._handle.fd : undefined),
    got(envelope, fd) {
      const server = new net.Server();
      server.listen({ fd });
      return server;
    },
  },
  'net.Native': {
    fd: (handle) => handle.fd,
    got(envelope, fd) {
      const { TCP, Pipe, tcpSocket, pipeSocket } = handleWraps();
      return openWrap(native.socketKind(fd) === 'pipe' ? new Pipe(pipeSocket) : new TCP(tcpSocket), fd);
    },
  },
  'net.BoundSocket': {
    // Node: a pipe bind cannot be sent; one already adopted, closed or sent cannot be transferred.
    fd(bound) {
      if (bound.isPipe) throw makeError('ERR_INVALID_HANDLE_TYPE');
      try {
        return bound.fd();
      } catch (err) {
        if (err.code !== 'ERR_SOCKET_HANDLE_ADOPTED') throw err;
        throw makeError('ERR_WORKER_HANDLE_NOT_TRANSFERABLE', 'net.BoundSocket');
      }
    },
    // Handed over as Node hands it (its transfer hook): the sender's BoundSocket is left adopted, and its handle
    // closes at once, the core's duplicate keeping the socket until the ACK (keepOpen or not: nothing can reach the
    // handle any more).
    postSend(bound) {
      const { transfer } = boundSocketTransfer();
      bound[transfer]().data.handle.close();
    },
    got(envelope, fd) {
      const hooks = boundSocketTransfer();
      if (!hooks) throw makeError('FORKLINE_BAD_HANDLE', 'a net.BoundSocket arrived, and this Node has none; closed');
      // Checked before the fd has an owner: the hook closes a handle it refuses, so it must not refuse.
      if (native.socketKind(fd) !== 'tcp') {
        throw makeError('FORKLINE_BAD_HANDLE', 'a net.BoundSocket arrived that is no TCP socket; closed');
      }
      const { TCP, tcpSocket } = handleWraps();
      const bound = new net._TransferredBoundSocket();
      bound[hooks.deserialize]({ handle: openWrap(new TCP(tcpSocket), fd) });
      return bound;
    },
  },
  'dgram.Socket': {
    fd: (socket) => {
      const handle = dgramHandle(socket);
      return handle ? handle.fd : undefined;
    },
    envelope(envelope, socket) {
      envelope.dgramType = socket.type;
    },
    got(envelope, fd) {
      const socket = dgram.createSocket(envelope.dgramType);
      socket.bind({ fd });
      return socket;
    },
  },
  'dgram.Native': {
    fd: (handle) => handle.fd,
    got: (envelope, fd) => openWrap(new (handleWraps().UDP)(), fd),
  },
};

function handleType(handle) {
  if (handle instanceof net.Socket) return 'net.Socket';
  if (handle instanceof net.Server) return 'net.Server';
  if (handle instanceof dgram.Socket) return 'dgram.Socket';
  const { TCP, Pipe, UDP } = handleWraps();
  if (handle instanceof TCP || handle instanceof Pipe) return 'net.Native';
  const bound = boundSocketTransfer();
  if (bound && handle instanceof bound.BoundSocket) return 'net.BoundSocket';
  if (handle instanceof UDP) return 'dgram.Native';
  throw makeError('ERR_INVALID_HANDLE_TYPE');
}

module.exports = { HANDLE_TYPES, handleType, closeFd, nop };
