// Writes protocol/vectors.json to stdout: bytes made by the real npm MessagePack packages that
// VoicePing routers and clients use, so that the router is tested against them rather than
// against someone's reading of them. Run with `npm ci && npm run vectors`.
//
//   encoders  the packages that made the bytes, with who uses them.
//   server    frames the router sends, encoded by notepack@0.0.2: the router must write exactly
//             these bytes. Every package's decoder is made to read each one back here.
//   values    single values, edge cases included, encoded by every package; `decoded` is what
//             that package's own decoder reads back (tagged, see `tagged`): the router must agree.
//   client    frames clients send, encoded by every package: the router must decode each to
//             `expect` (and its payload to what the package itself reads back).
//   invalid   messages that are not frames, encoded by every package: the router must refuse each.
// A package that refuses to encode a value is recorded as {error} instead of {hex, decoded}.
'use strict';

const assert = require('node:assert');

const version = (pkg) => require(`${pkg}/package.json`).version;
const notepack = require('notepack');
const io2 = require('notepack.io-2');
const io3 = require('notepack.io-3');

const encoders = [
  {
    name: `notepack@${version('notepack')}`,
    usedBy: 'VoicePing routers, Node clients and tooling; the router encodes exactly like it',
    encode: notepack.encode,
    decode: notepack.decode,
  },
  {
    name: `notepack.io@${version('notepack.io-2')}`,
    usedBy: 'Node clients on notepack.io 2',
    encode: io2.encode,
    decode: io2.decode,
  },
  {
    name: `notepack.io@${version('notepack.io-2')} browser`,
    usedBy: 'browsers on notepack.io 2 (bundlers take its browser/ build)',
    encode: require('notepack.io-2/browser/encode'),
    decode: require('notepack.io-2/browser/decode'),
  },
  {
    name: `notepack.io@${version('notepack.io-3')}`,
    usedBy: 'Node clients on notepack.io 3',
    encode: io3.encode,
    decode: io3.decode,
  },
  {
    name: `notepack.io@${version('notepack.io-3')} browser`,
    usedBy: 'browsers on notepack.io 3 (bundlers take its browser/ build)',
    encode: require('notepack.io-3/browser/encode'),
    decode: require('notepack.io-3/browser/decode'),
  },
];

/** Bytes of a Buffer, an ArrayBuffer or a typed array. */
const bytesOf = (b) => Buffer.from(b instanceof ArrayBuffer ? b : b.buffer, b.byteOffset || 0, b.byteLength);
const hexOf = (b) => bytesOf(b).toString('hex');

/**
 * A decoded JavaScript value in a form the Rust tests can compare with exactly: integers as
 * decimal strings, floats as JavaScript prints them, binaries as hex, maps as [key, value] pairs.
 */
function tagged(v) {
  if (v === undefined) return ['undefined'];
  if (v === null) return ['nil'];
  if (typeof v === 'boolean') return ['bool', v];
  if (typeof v === 'number') return Number.isInteger(v) ? ['int', BigInt(v).toString()] : ['float', String(v)];
  if (typeof v === 'string') return ['str', v];
  if (v instanceof Date) return ['date', v.getTime()];
  if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return ['bin', hexOf(v)];
  if (Array.isArray(v)) return ['array', v.map(tagged)];
  return ['map', Object.keys(v).map((k) => [k, tagged(v[k])])];
}

/** What `enc` makes of `value`: its bytes and what it reads back, or why it refused. */
function encodeWith(enc, value) {
  let bytes;
  try {
    bytes = enc.encode(value);
  } catch (e) {
    return { error: e.message };
  }
  return { hex: hexOf(bytes), decoded: tagged(enc.decode(bytesOf(bytes))) };
}

/** `value` (or `value(encoder)`) encoded by every package, keyed by package name. */
function everyEncoder(value) {
  const out = {};
  for (const enc of encoders) {
    out[enc.name] = encodeWith(enc, typeof value === 'function' ? value(enc) : value);
  }
  return out;
}

const T = 1702281234567;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

// ---- server: what the router sends ----------------------------------------------------------

const user = (userId, status, lastSeen, deviceId, version) =>
  deviceId === undefined ? { userId, status, lastSeen, version } : { userId, status, lastSeen, deviceId, version };
const many = Array.from({ length: 16 }, (_, i) => user(`driver-${i}`, 'online', T - i * 1000, `phone-${i}`, i + 1));

const server = [
  ['update online with device', 'update',
    { userId: 'user123', status: 'online', timestamp: T, type: 'presence_update', deviceId: 'phone-1', lastSeen: T - 5, version: 1 }],
  ['update offline without device', 'update',
    { userId: '42', status: 'offline', timestamp: T, type: 'presence_update', lastSeen: T - 60000, version: 300 }],
  ['update with a 40-byte user id (str8)', 'update',
    { userId: 'u'.repeat(40), status: 'online', timestamp: T, type: 'presence_update', lastSeen: T, version: 70000 }],
  ['update with a 256-byte user id (str16) and a 32-bit version', 'update',
    { userId: 'v'.repeat(256), status: 'online', timestamp: T, type: 'presence_update', deviceId: 'd'.repeat(128), lastSeen: T, version: 4294967296 }],
  ['update with a non-ASCII user id and edge numbers', 'update',
    { userId: 'Łódź-運転手-😀', status: 'offline', timestamp: MAX_SAFE, type: 'presence_update', lastSeen: 0, version: 127 }],
  ['update at the unsigned edges', 'update',
    { userId: 'edge', status: 'online', timestamp: 4294967295, type: 'presence_update', deviceId: '', lastSeen: 65535, version: 128 }],
  ['snapshot of two', 'snapshot', {
    to: 'dispatcher-1',
    body: { timestamp: T, totalOnline: 2, users: [user('a', 'online', T, 'd1', 3), user('b', 'online', T - 1, undefined, 1)] },
  }],
  ['empty snapshot', 'snapshot', { to: 'web-9', body: { timestamp: T, totalOnline: 0, users: [] } }],
  ['snapshot of sixteen (array16)', 'snapshot', { to: 'dispatcher-1', body: { timestamp: T, totalOnline: 16, users: many } }],
  ['error 403', 'error', { to: 'dash', body: { code: 403, message: 'HEARTBEAT is for mobile connections, not dashboard' } }],
  ['error 400', 'error', { to: 'user123', body: { code: 400, message: 'a frame must be a MessagePack array' } }],
  ['error 400 with a short message', 'error', { to: '7', body: { code: 400, message: 'bad' } }],
].map(([name, kind, value]) => {
  const frame = kind === 'update'
    ? [0, 31, 0, 'broadcast', value]
    : [0, kind === 'snapshot' ? 32 : 33, 0, value.to, value.body];
  const bytes = notepack.encode(frame);
  for (const enc of encoders) {
    assert.deepStrictEqual(enc.decode(bytes), frame, `${enc.name} reads back "${name}"`);
    assert.strictEqual(hexOf(enc.encode(frame)), hexOf(bytes), `${enc.name} writes "${name}" like notepack`);
  }
  return { name, kind, value, hex: hexOf(bytes) };
});

// ---- values: one value at a time, edges included --------------------------------------------

const binary = [1, 2, 3];
const values = [
  ['zero', 0], ['negative zero', -0], ['fixint 127', 127], ['uint8 128', 128], ['uint8 255', 255],
  ['uint16 256', 256], ['uint16 65535', 65535], ['uint32 65536', 65536], ['uint32 4294967295', 4294967295],
  ['uint64 4294967296', 4294967296], ['uint64 ms timestamp', T], ['uint64 largest safe integer', MAX_SAFE],
  ['negative fixint -1', -1], ['negative fixint -32', -32], ['int8 -33', -33], ['int8 -128', -128],
  ['int16 -129', -129], ['int16 -32768', -32768], ['int32 -32769', -32769], ['int32 -2147483648', -2147483648],
  ['int64 -2147483649', -2147483649], ['int64 smallest safe integer', -MAX_SAFE],
  ['unsafe integer 2^53+2', 2 ** 53 + 2], ['unsafe integer 2^63', 2 ** 63], ['unsafe integer 2^64', 2 ** 64],
  ['unsafe integer -2^63', -(2 ** 63)],
  ['float 1.5', 1.5], ['float -0.25', -0.25], ['float 0.1', 0.1], ['float ms with fraction', T + 0.5],
  ['float largest', Number.MAX_VALUE], ['float smallest subnormal', Number.MIN_VALUE],
  ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity],
  ['empty string', ''], ['fixstr 31 bytes', 'a'.repeat(31)], ['str8 32 bytes', 'a'.repeat(32)],
  ['str8 255 bytes', 'b'.repeat(255)], ['str16 256 bytes', 'c'.repeat(256)],
  ['two-byte UTF-8', 'é'], ['three-byte UTF-8', '運'],
  ['four-byte UTF-8 (surrogate pair)', '😀'], ['str8 made of 11 three-byte characters', '運'.repeat(11)],
  ['nil', null], ['undefined', undefined], ['true', true], ['false', false],
  ['Buffer [1,2,3]', Buffer.from(binary)], ['ArrayBuffer [1,2,3]', new Uint8Array(binary).buffer],
  ['Uint8Array [1,2,3]', new Uint8Array(binary)], ['ArrayBuffer of one zero byte', new ArrayBuffer(1)],
  ['ArrayBuffer of 8 bytes', new Uint8Array([0, 0, 0, 0, 0, 0, 0, 1]).buffer],
  ['Buffer of 256 bytes (bin16)', Buffer.alloc(256, 7)],
  ['Date', new Date(T)], ['Date on a whole second', new Date(1702281234000)], ['Date at the epoch', new Date(0)],
  ['Date before the epoch', new Date(-1)], ['Date after 2514 (timestamp96)', new Date(2 ** 34 * 1000 + 1)],
  ['map with an undefined value', { a: undefined, b: 1 }], ['empty map', {}], ['empty array', []],
  ['array16 of 16', Array.from({ length: 16 }, (_, i) => i)],
  ['map16 of 16', Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i]))],
  ['BigInt 5', BigInt(5)],
].map(([name, value]) => ({ name, encodings: everyEncoder(value) }));

// ---- client: frames clients send --------------------------------------------------------------

const heartbeat = { type: 'heartbeat', timestamp: T };
const expect = (channel, messageType, from, to, payload) =>
  ({ channel, messageType, from: tagged(from), to: tagged(to), payload });
const client = [
  ['design example', [0, 30, 'user123', 0, heartbeat], expect(0, 30, 'user123', 0, true)],
  ['heartbeat on a private channel', [1, 30, 'user123', 'dispatcher-1', heartbeat], expect(1, 30, 'user123', 'dispatcher-1', true)],
  ['integer ids', [1, 30, 123456789, 987654321012, heartbeat], expect(1, 30, 123456789, 987654321012, true)],
  ['negative id', [0, 30, -5, 0, heartbeat], expect(0, 30, -5, 0, true)],
  ['largest safe integer ids', [0, 30, MAX_SAFE, -MAX_SAFE, heartbeat], expect(0, 30, MAX_SAFE, -MAX_SAFE, true)],
  ['unsafe integer id 2^63 (uint64 above i64)', [0, 30, 2 ** 63, 0, heartbeat], expect(0, 30, 2 ** 63, 0, true)],
  ['str8 user id', [0, 30, 'x'.repeat(33), 0, heartbeat], expect(0, 30, 'x'.repeat(33), 0, true)],
  ['str16 user id', [0, 30, 'y'.repeat(300), 0, heartbeat], expect(0, 30, 'y'.repeat(300), 0, true)],
  ['non-ASCII user id', [0, 30, 'Łódź-😀', 0, heartbeat], expect(0, 30, 'Łódź-😀', 0, true)],
  ['3 elements', [0, 30, 'u1'], expect(0, 30, 'u1', null, false)],
  ['4 elements', [0, 30, 'u1', 'g1'], expect(0, 30, 'u1', 'g1', false)],
  ['6 elements with a string message id', [0, 30, 'u1', 0, 'msg-1', heartbeat], expect(0, 30, 'u1', 0, true)],
  ['6 elements with an integer message id', [0, 30, 'u1', 0, 77, heartbeat], expect(0, 30, 'u1', 0, true)],
  ['undefined payload', [0, 30, 'u1', 0, undefined], expect(0, 30, 'u1', 0, false)],
  ['nil payload', [0, 30, 'u1', 0, null], expect(0, 30, 'u1', 0, false)],
  ['undefined toId', [0, 30, 'u1', undefined, heartbeat], expect(0, 30, 'u1', null, true)],
  ['nil fromId', [0, 30, null, 0, heartbeat], expect(0, 30, null, 0, true)],
  ['empty heartbeat payload', [0, 30, 'u1', 0, {}], expect(0, 30, 'u1', 0, true)],
  ['heartbeat with an undefined field', [0, 30, 'u1', 0, { type: 'heartbeat', timestamp: T, battery: undefined }], expect(0, 30, 'u1', 0, true)],
  ['Date timestamp', [0, 30, 'u1', 0, { type: 'heartbeat', timestamp: new Date(T) }], expect(0, 30, 'u1', 0, true)],
  ['Date timestamp on a whole second', [0, 30, 'u1', 0, { type: 'heartbeat', timestamp: new Date(1702281234000) }], expect(0, 30, 'u1', 0, true)],
  ['float timestamp', [0, 30, 'u1', 0, { type: 'heartbeat', timestamp: T + 0.5 }], expect(0, 30, 'u1', 0, true)],
  ['NaN timestamp', [0, 30, 'u1', 0, { type: 'heartbeat', timestamp: NaN }], expect(0, 30, 'u1', 0, true)],
  ['string timestamp', [0, 30, 'u1', 0, { type: 'heartbeat', timestamp: new Date(T).toISOString() }], expect(0, 30, 'u1', 0, true)],
  ['AUDIO with a Buffer payload', [1, 3, 'u1', 'u2', Buffer.from([1, 2, 3])], expect(1, 3, 'u1', 'u2', true)],
  ['AUDIO with an ArrayBuffer payload', [1, 3, 'u1', 'u2', new Uint8Array([1, 2, 3]).buffer], expect(1, 3, 'u1', 'u2', true)],
  ['AUDIO with an 8-byte ArrayBuffer payload', [1, 3, 'u1', 'u2', new ArrayBuffer(8)], expect(1, 3, 'u1', 'u2', true)],
  ['PTT START', [0, 1, 'u1', 'g1', null], expect(0, 1, 'u1', 'g1', false)],
  ['PTT STOP', [0, 2, 'u1', 'g1', null], expect(0, 2, 'u1', 'g1', false)],
  ['PTT CONNECTION', [0, 4, 'u1', 0, { deviceId: 'phone-1' }], expect(0, 4, 'u1', 0, true)],
  ['PTT START_ACK', [0, 6, 0, 'u1', 'msg-1'], expect(0, 6, 0, 'u1', true)],
  ['PTT USER_ADD', [0, 15, 'u1', 'g1', { userId: 'u2' }], expect(0, 15, 'u1', 'g1', true)],
  ['PTT CONNECTION_TEST', [0, 25, 'u1', 0], expect(0, 25, 'u1', 0, false)],
  ['PRESENCE_UPDATE from a client (decodes; the router answers 400)', [0, 31, 'u1', 'broadcast', {}], expect(0, 31, 'u1', 'broadcast', true)],
].map(([name, frame, want]) => {
  const encodings = everyEncoder(frame);
  for (const e of Object.values(encodings)) {
    if (e.decoded && e.decoded[0] === 'array' && e.decoded[1].length >= 5) e.payload = e.decoded[1][e.decoded[1].length - 1];
    delete e.decoded;
  }
  return { name, expect: want, encodings };
});

// ---- invalid: not frames -------------------------------------------------------------------

const invalid = [
  ['not an array', { type: 'heartbeat' }],
  ['a bare number', 30],
  ['2 elements', [0, 30]],
  ['7 elements', [0, 30, 'u', 0, 1, 2, 3]],
  ['unknown channel 7', [7, 30, 'u', 0, heartbeat]],
  ['negative channel', [-1, 30, 'u', 0, heartbeat]],
  ['string channel', ['0', 30, 'u', 0, heartbeat]],
  ['string message type', [0, '30', 'u', 0, heartbeat]],
  ['float message type', [0, 30.5, 'u', 0, heartbeat]],
  ['negative message type', [0, -30, 'u', 0, heartbeat]],
  ['undefined message type', [0, undefined, 'u', 0, heartbeat]],
  ['boolean fromId', [0, 30, true, 0, heartbeat]],
  ['map fromId', [0, 30, { id: 'u' }, 0, heartbeat]],
  ['float toId', [0, 30, 'u', 1.5, heartbeat]],
  ['Date fromId', [0, 30, new Date(T), 0, heartbeat]],
].map(([name, value]) => ({ name, encodings: everyEncoder(value) }));
for (const v of invalid) for (const e of Object.values(v.encodings)) delete e.decoded;

const good = everyEncoder([0, 30, 'u', 0, heartbeat]);
const mangled = (name, f) => {
  const encodings = {};
  for (const [enc, e] of Object.entries(good)) encodings[enc] = { hex: f(e.hex) };
  invalid.push({ name, encodings });
};
mangled('trailing bytes', (h) => `${h}00`);
mangled('truncated', (h) => h.slice(0, -4));
mangled('empty message', () => '');

process.stdout.write(`${JSON.stringify({
  generator: 'protocol/gen-vectors.js',
  encoders: encoders.map(({ name, usedBy }) => ({ name, usedBy })),
  server,
  values,
  client,
  invalid,
}, null, 1)}\n`);
