// Writes test vectors to stdout: values encoded by the real npm `notepack` 0.0.2.
//   server: frames the router sends; its encoder must produce exactly these bytes.
//   client: frames clients send; the router must decode each to `expect`.
'use strict';
const notepack = require('notepack');

const hex = (value) => notepack.encode(value).toString('hex');
const T = 1702281234567;

const server = [
  ['update online with device', 'update',
    { userId: 'user123', status: 'online', timestamp: T, type: 'presence_update', deviceId: 'phone-1', lastSeen: T - 5, version: 1 }],
  ['update offline without device', 'update',
    { userId: '42', status: 'offline', timestamp: T, type: 'presence_update', lastSeen: T - 60000, version: 300 }],
  ['update with a 40-byte user id (str8)', 'update',
    { userId: 'u'.repeat(40), status: 'online', timestamp: T, type: 'presence_update', lastSeen: T, version: 70000 }],
  ['snapshot of two', 'snapshot', {
    to: 'dispatcher-1',
    body: { timestamp: T, totalOnline: 2, users: [
      { userId: 'a', status: 'online', lastSeen: T, deviceId: 'd1', version: 3 },
      { userId: 'b', status: 'online', lastSeen: T - 1, version: 1 },
    ] },
  }],
  ['empty snapshot', 'snapshot', { to: 'web-9', body: { timestamp: T, totalOnline: 0, users: [] } }],
  ['error 403', 'error', { to: 'dash', body: { code: 403, message: 'HEARTBEAT is for mobile connections, not dashboard' } }],
  ['error 400', 'error', { to: 'user123', body: { code: 400, message: 'a frame must be a MessagePack array' } }],
].map(([name, kind, value]) => {
  const frame = kind === 'update'
    ? [0, 31, 0, 'broadcast', value]
    : [0, kind === 'snapshot' ? 32 : 33, 0, value.to, value.body];
  return { name, kind, value, hex: hex(frame) };
});

const heartbeat = { type: 'heartbeat', timestamp: T };
const client = [
  ['design example', [0, 30, 'user123', 0, heartbeat], { channel: 0, messageType: 30, from: 'user123', to: 0, payload: true }],
  ['integer ids', [1, 30, 123456789, 987654321012, heartbeat], { channel: 1, messageType: 30, from: 123456789, to: 987654321012, payload: true }],
  ['negative id', [0, 30, -5, 0, heartbeat], { channel: 0, messageType: 30, from: -5, to: 0, payload: true }],
  ['3 elements', [0, 30, 'u1'], { channel: 0, messageType: 30, from: 'u1', to: null, payload: false }],
  ['4 elements', [0, 30, 'u1', 'g1'], { channel: 0, messageType: 30, from: 'u1', to: 'g1', payload: false }],
  ['6 elements with message id', [0, 30, 'u1', 0, 'msg-1', heartbeat], { channel: 0, messageType: 30, from: 'u1', to: 0, payload: true }],
  ['undefined payload', [0, 30, 'u1', 0, undefined], { channel: 0, messageType: 30, from: 'u1', to: 0, payload: false }],
  ['undefined toId', [0, 30, 'u1', undefined, heartbeat], { channel: 0, messageType: 30, from: 'u1', to: null, payload: true }],
  ['Date timestamp', [0, 30, 'u1', 0, { type: 'heartbeat', timestamp: new Date(T) }], { channel: 0, messageType: 30, from: 'u1', to: 0, payload: true }],
  ['float timestamp', [0, 30, 'u1', 0, { type: 'heartbeat', timestamp: T + 0.5 }], { channel: 0, messageType: 30, from: 'u1', to: 0, payload: true }],
  ['str8 user id', [0, 30, 'x'.repeat(33), 0, heartbeat], { channel: 0, messageType: 30, from: 'x'.repeat(33), to: 0, payload: true }],
  ['binary payload', [1, 3, 'u1', 'u2', Buffer.from([1, 2, 3])], { channel: 1, messageType: 3, from: 'u1', to: 'u2', payload: true }],
  ['PTT START', [0, 1, 'u1', 'g1', null], { channel: 0, messageType: 1, from: 'u1', to: 'g1', payload: false }],
].map(([name, value, expect]) => ({ name, hex: hex(value), expect }));

const invalid = [
  ['not an array', hex({ type: 'heartbeat' })],
  ['2 elements', hex([0, 30])],
  ['7 elements', hex([0, 30, 'u', 0, 1, 2, 3])],
  ['unknown channel', hex([7, 30, 'u', 0, heartbeat])],
  ['string message type', hex([0, '30', 'u', 0, heartbeat])],
  ['trailing bytes', hex([0, 30, 'u', 0, heartbeat]) + '00'],
  ['truncated', hex([0, 30, 'u', 0, heartbeat]).slice(0, -4)],
].map(([name, h]) => ({ name, hex: h }));

process.stdout.write(JSON.stringify({ generator: 'notepack@0.0.2', server, client, invalid }, null, 2) + '\n');
