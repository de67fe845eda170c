// A minimal graphql-transport-ws client for one subscription. Browsers cannot set headers on
// a WebSocket, so the credential travels in the connection_init payload.

import { secretKey } from './api.js';

/**
 * Subscribes to `query`; calls onData(data) for every result, onStatus(text) when the
 * connection changes. Reconnects after a drop (with a short back-off) until closed.
 * Returns a function that closes it.
 */
export function subscribe(query, variables, { onData, onError, onStatus }) {
  let socket;
  let closed = false;
  let retryDelay = 500;
  let retryTimer;

  const connect = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/graphql`, 'graphql-transport-ws');
    onStatus('connecting');
    socket.addEventListener('open', () => {
      socket.send(JSON.stringify({
        type: 'connection_init',
        payload: { authorization: `Bearer ${secretKey() ?? ''}` },
      }));
    });
    socket.addEventListener('message', (event) => {
      const message = JSON.parse(event.data);
      switch (message.type) {
        case 'connection_ack':
          retryDelay = 500;
          onStatus('live');
          socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables } }));
          break;
        case 'next':
          if (message.payload.errors?.length) {
            onError(message.payload.errors[0]);
          } else {
            onData(message.payload.data);
          }
          break;
        case 'error':
          onError(message.payload[0] ?? { message: 'subscription refused' });
          break;
        case 'ping':
          socket.send(JSON.stringify({ type: 'pong' }));
          break;
        default:
          break;
      }
    });
    socket.addEventListener('close', (event) => {
      if (closed) return;
      if (event.code === 4403) {
        onStatus('refused');
        onError({ message: event.reason || 'credential refused', extensions: { code: 'UNAUTHENTICATED' } });
        return;
      }
      onStatus('reconnecting');
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10_000);
    });
  };

  connect();
  return () => {
    closed = true;
    clearTimeout(retryTimer);
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ id: '1', type: 'complete' }));
    }
    socket.close(1000, 'page left');
  };
}
