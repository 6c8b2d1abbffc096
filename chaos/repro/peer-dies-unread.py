"""A channel peer (run by fork() with execPath python3) that dies with unread data in its receive queue, right after
writing one last message. The kernel then marks the parent's socket ECONNRESET (unix_release_sock), so the parent's
epoll reports EPOLLERR together with the data and the EOF. See pollerr.js."""
import os
import socket

chan = socket.socket(fileno=3)
chan.sendall(b'"ready"\n')
chan.recv(1, socket.MSG_PEEK)  # the parent's message is queued here now; it stays unread
chan.sendall(b'"last"\n')
os._exit(0)
