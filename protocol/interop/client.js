// A scripted session against a running router, as real clients do it; run by tests/interop.rs.
//
//   node interop/client.js notepack   Node handset and tooling: `ws` + notepack@0.0.2, the token
//                                     and device id in headers.
//   node interop/client.js browser    A browser: `ws` used like the WebSocket API + the browser
//                                     build of notepack.io@3, the token (and device id) as
//                                     subprotocols, ArrayBuffer messages.
//
// Environment: ROUTER (host:port), MOBILE_TOKEN, MOBILE_USER, DEVICE_ID, DASHBOARD_TOKEN,
// LISTENER_TOKEN, LISTENER_USER (a second handset, for talk), TIMEOUT_MS. Prints one JSON line per step; every frame received is printed with its bytes
// (`hex`) and what the package decoded (`frame`). Exits 0 after the last step, 2 on an error,
// 3 when a step takes longer than TIMEOUT_MS in all.
'use strict';

const WebSocket = require('ws');

const flavour = process.argv[2];
const env = (name) => {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
};

let step = 'start';
function emit(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
function fail(message) {
  emit({ step: 'failed', during: step, message });
  process.exit(2);
}
process.on('uncaughtException', (e) => fail(e.stack || String(e)));
process.on('unhandledRejection', (e) => fail((e && e.stack) || String(e)));

const timeout = Number(process.env.TIMEOUT_MS || 10000);
setTimeout(() => {
  emit({ step: 'timeout', during: step, afterMs: timeout });
  process.exit(3);
}, timeout).unref();

const flavours = {
  notepack: () => {
    const notepack = require('notepack');
    return {
      encode: notepack.encode,
      decode: notepack.decode,
      // notepack 0.0.2 writes a Buffer as binary (a Uint8Array as a map).
      binary: (bytes) => Buffer.from(bytes),
      // Handsets send `token` and `device_id`; the VoicePing tooling sends `VoicePingToken`.
      open: (url, token, deviceId) => new WebSocket(url, {
        headers: deviceId ? { token, device_id: deviceId } : { VoicePingToken: token },
      }),
    };
  },
  browser: () => {
    const encode = require('notepack.io-3/browser/encode');
    const decode = require('notepack.io-3/browser/decode');
    return {
      encode,
      decode,
      // The browser build writes an ArrayBuffer as binary (typed arrays and Buffers as maps).
      binary: (bytes) => Uint8Array.from(bytes).buffer,
      // A browser cannot set headers: `new WebSocket(url, [token, deviceId])`.
      open: (url, token, deviceId) => {
        const ws = new WebSocket(url, deviceId ? [token, deviceId] : [token]);
        ws.binaryType = 'arraybuffer';
        return ws;
      },
    };
  },
};
if (!flavours[flavour]) fail(`unknown flavour ${flavour}: notepack or browser`);
const codec = flavours[flavour]();

const router = env('ROUTER');
const url = `ws://${router}/ws`;
const bytesOf = (data) => Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data);

/** An opened socket whose messages and close are awaited one at a time, in order. */
function connect(token, deviceId) {
  const ws = codec.open(url, token, deviceId);
  const queue = [];
  const waiting = [];
  const deliver = (item) => (waiting.length ? waiting.shift()(item) : queue.push(item));
  ws.addEventListener('message', (event) => deliver({ data: event.data }));
  ws.addEventListener('close', (event) => deliver({ close: event.code }));
  const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiting.push(r)));
  const opened = new Promise((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', (event) => reject(new Error(event.message)));
  });
  return {
    ws,
    opened,
    /** The next frame, printed as `name`; fails on a close. */
    async frame(name) {
      step = name;
      const item = await next();
      if (item.close !== undefined) fail(`closed with ${item.close} while waiting for ${name}`);
      const frame = codec.decode(item.data);
      emit({ step: name, hex: bytesOf(item.data).toString('hex'), frame });
      return frame;
    },
    /** The next message's bytes only, printed as `name` (binary reads differently per package). */
    async raw(name) {
      step = name;
      const item = await next();
      if (item.close !== undefined) fail(`closed with ${item.close} while waiting for ${name}`);
      emit({ step: name, hex: bytesOf(item.data).toString('hex') });
    },
    send(value) {
      ws.send(codec.encode(value));
    },
  };
}

/** Upgrades with a token the router must refuse, and reports the HTTP answer. */
function refused(token) {
  step = 'refused';
  return new Promise((resolve) => {
    const ws = codec.open(url, token, undefined);
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        emit({ step: 'refused', status: res.statusCode, body: JSON.parse(body) });
        req.destroy();
        resolve();
      });
    });
    ws.on('open', () => fail('a bad token was accepted'));
    ws.on('error', () => {});
  });
}

/** `POST /api/presence/status` for `userIds`, with a Bearer token. */
async function status(token, userIds) {
  step = 'status';
  const res = await fetch(`http://${router}/api/presence/status`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ userIds }),
  });
  emit({ step: 'status', status: res.status, body: await res.json() });
}

/** Group talk and a private text between two handsets, as the VoicePing SDKs send them. */
async function talk(talkerToken, talkerUser, deviceId) {
  const listenerUser = env('LISTENER_USER');
  const talker = connect(talkerToken, deviceId);
  const listener = connect(env('LISTENER_TOKEN'), 'phone-2');
  await talker.opened;
  await listener.opened;
  // Both join the group; a CONNECTION_TEST answered means the join was taken.
  for (const [handset, user] of [[talker, talkerUser], [listener, listenerUser]]) {
    handset.send([0, 15, user, 'group-1']);
    handset.send([0, 25, user, 0, 'ready']);
    await handset.frame('ready');
  }
  talker.send([0, 1, talkerUser, 'group-1', 1702281234567]);
  await talker.frame('talk-start-ack');
  await listener.frame('talk-start');
  talker.send([0, 3, talkerUser, 'group-1', codec.binary([1, 2, 3, 4])]);
  await listener.raw('talk-audio');
  talker.send([0, 2, talkerUser, 'group-1']);
  await talker.frame('talk-stop-ack');
  await listener.frame('talk-stop');
  talker.send([1, 17, talkerUser, listenerUser, JSON.stringify({ text: 'hello' })]);
  await talker.frame('text-ack');
  await listener.frame('text');
  talker.ws.close(1000);
  listener.ws.close(1000);
}

async function main() {
  const mobileUser = env('MOBILE_USER');
  const mobileToken = env('MOBILE_TOKEN');
  const dashboardToken = env('DASHBOARD_TOKEN');
  const deviceId = env('DEVICE_ID');

  await refused('not-a-jwt');

  step = 'dashboard-open';
  const dashboard = connect(dashboardToken);
  await dashboard.opened;
  emit({ step: 'dashboard-open', protocol: dashboard.ws.protocol });
  await dashboard.frame('snapshot');

  step = 'handset-open';
  const handset = connect(mobileToken, deviceId);
  await handset.opened;
  emit({ step: 'handset-open', protocol: handset.ws.protocol });
  const online = await dashboard.frame('online');

  // Let the clock pass the connect's lastSeen, so the heartbeat's write shows in lastSeen.
  step = 'heartbeat';
  while (Date.now() <= online[4].lastSeen + 5) await new Promise((r) => setTimeout(r, 5));
  handset.send([0, 4, mobileUser]);
  handset.send([0, 30, mobileUser, 0, { type: 'heartbeat', timestamp: Date.now() }]);
  handset.send([0, 30, mobileUser, 0, { type: 'heartbeat', timestamp: new Date() }]);
  handset.send([0, 30, mobileUser, 0, 'message-7', { type: 'heartbeat', timestamp: Date.now(), battery: undefined }]);
  // A frame only the router may send: its error is the first reply, so nothing before it got one.
  handset.send([0, 31, mobileUser, 'broadcast', {}]);
  await handset.frame('handset-error');

  await status(dashboardToken, [mobileUser, 'nobody']);

  dashboard.send([0, 30, 'dispatcher', 0, { type: 'heartbeat', timestamp: Date.now() }]);
  await dashboard.frame('dashboard-error');

  handset.ws.close(1000);
  await dashboard.frame('offline');

  dashboard.ws.close(1000);
  await talk(mobileToken, mobileUser, deviceId);

  step = 'done';
  emit({ step: 'done' });
  process.exit(0);
}

main();
