'use strict';

// Node's SocketList (lib/internal/socket_list.js): a socket that came from a net.Server and was sent to the peer
// still counts for that server. The sender's server asks the peer with NODE_SOCKET_GET_COUNT for
// getConnections() and NODE_SOCKET_NOTIFY_CLOSE for close(); the receiver counts the sockets it got per server key
// and answers NODE_SOCKET_COUNT / NODE_SOCKET_ALL_CLOSED. Wire-compatible with Node on either end.

const EventEmitter = require('node:events');
const { makeError } = require('./errors');

// The sender's side: one per channel end and server key, registered with the server (net.Server#_setupWorker).
class SocketListSend extends EventEmitter {
  constructor(end, key) {
    super();
    this.key = key;
    this.child = end;
    end.once('exit', () => this.emit('exit', this));
  }

  _request(message, replyCmd, swallowErrors, callback) {
    const end = this.child;
    const onclose = () => {
      end.removeListener('internalMessage', onreply);
      callback(makeError('ERR_CHILD_CLOSED_BEFORE_REPLY'));
    };
    const onreply = (reply) => {
      if (!(reply.cmd === replyCmd && reply.key === this.key)) return;
      end.removeListener('disconnect', onclose);
      end.removeListener('internalMessage', onreply);
      callback(null, reply);
    };
    if (!end.connected) return onclose();
    end._send(message, undefined, { swallowErrors });
    end.once('disconnect', onclose);
    end.on('internalMessage', onreply);
  }

  close(callback) {
    this._request({ cmd: 'NODE_SOCKET_NOTIFY_CLOSE', key: this.key }, 'NODE_SOCKET_ALL_CLOSED', true, callback);
  }

  getConnections(callback) {
    this._request({ cmd: 'NODE_SOCKET_GET_COUNT', key: this.key }, 'NODE_SOCKET_COUNT', false, (err, reply) => {
      if (err) return callback(err);
      callback(null, reply.count);
    });
  }
}

// The receiver's side: counts the sockets of one server key that are still open here.
class SocketListReceive extends EventEmitter {
  constructor(end, key) {
    super();
    this.connections = 0;
    this.key = key;
    this.child = end;
    const onempty = () => {
      if (end.connected)
        end._send({ cmd: 'NODE_SOCKET_ALL_CLOSED', key: this.key }, undefined, { swallowErrors: true });
    };
    end.on('internalMessage', (message) => {
      if (message.key !== this.key) return;
      if (message.cmd === 'NODE_SOCKET_NOTIFY_CLOSE') {
        if (this.connections === 0) onempty();
        else this.once('empty', onempty);
      } else if (message.cmd === 'NODE_SOCKET_GET_COUNT') {
        if (end.connected)
          end._send({ cmd: 'NODE_SOCKET_COUNT', key: this.key, count: this.connections }, undefined, {});
      }
    });
  }

  add({ socket }) {
    this.connections++;
    socket.once('close', () => {
      if (--this.connections === 0) this.emit('empty', this);
    });
  }
}

// Each end's lists by direction and server key (Node keeps them on the channel handle).
const lists = new WeakMap();

// The list of `end` for `key` ('send' or 'got'), and whether it was made by this call.
function socketList(direction, end, key) {
  let mine = lists.get(end);
  if (!mine) lists.set(end, (mine = { send: new Map(), got: new Map() }));
  let list = mine[direction].get(key);
  const created = list === undefined;
  if (created) {
    list = direction === 'send' ? new SocketListSend(end, key) : new SocketListReceive(end, key);
    mine[direction].set(key, list);
  }
  return { list, created };
}

module.exports = { socketList };
