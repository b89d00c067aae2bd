// The dashboard's MessagePack reader (src/server/dashboard/msgpack.js) against
// protocol/vectors.json and hand-made cases; run by tests/browser.rs.
//
// Prints one JSON line per case ({"case", "ok", "detail"?}) and a last line {"case": "summary",
// "passed", "failed"}; exits 0 when every case passed, 1 otherwise.
'use strict';

const path = require('path');
const { decode, DecodeError } = require(path.join(__dirname, '..', '..', 'src', 'server', 'dashboard', 'msgpack.js'));
const vectors = require(path.join(__dirname, '..', 'vectors.json'));

let passed = 0;
let failed = 0;
function report(name, ok, detail) {
  if (ok) passed += 1;
  else failed += 1;
  process.stdout.write(`${JSON.stringify(ok ? { case: name, ok } : { case: name, ok, detail })}\n`);
}
const hex = (h) => Uint8Array.from(Buffer.from(h, 'hex'));

/** A decoded value as the typed form vectors.json uses: ["int", "5"], ["str", "a"], ... */
function typed(v) {
  if (v === null) return ['nil'];
  if (typeof v === 'boolean') return ['bool', v];
  if (typeof v === 'bigint') return ['int', v.toString()];
  if (typeof v === 'number') return Number.isInteger(v) && !Object.is(v, -0) ? ['int', String(v)] : ['float', String(v)];
  if (typeof v === 'string') return ['str', v];
  if (v instanceof Uint8Array) return ['bin', Buffer.from(v).toString('hex')];
  if (Array.isArray(v)) return ['array', v.map(typed)];
  return ['map', Object.keys(v).map((k) => [k, typed(v[k])])];
}
/** Whether `error` refuses an ext type that really is at the byte it names in `bytes`. */
function refusedExt(error, bytes) {
  const m = /^ext type 0x([0-9a-f]+) at byte (\d+) /.exec(error || '');
  if (!m) return false;
  const b = bytes[Number(m[2])];
  return b === parseInt(m[1], 16) && ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8));
}
/** Plain JSON of a decoded value, keys in their order (maps have no prototype). */
const json = (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x));

function attempt(bytes) {
  try {
    return { value: decode(bytes) };
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return { error: e.message };
  }
}

// Every frame the router sends, byte for byte: the whole frame, its key order included.
for (const v of vectors.server) {
  const { to, body } = v.value;
  const frame = {
    update: [0, 31, 0, 'broadcast', v.value],
    snapshot: [0, 32, 0, to, body],
    error: [0, 33, 0, to, body],
  }[v.kind];
  const got = attempt(hex(v.hex));
  report(`server: ${v.name}`, got.value !== undefined && json(got.value) === json(frame),
    got.error || json(got.value));
}

// Every value each package writes: read as that package reads it, or refused when it holds an
// ext type (a Date, undefined, notepack.io 2's ArrayBuffer), which the router never sends.
for (const v of vectors.values) {
  for (const [encoder, e] of Object.entries(v.encodings)) {
    if (e.hex === undefined) continue;
    const bytes = hex(e.hex);
    const got = attempt(bytes);
    const name = `value: ${v.name} (${encoder})`;
    if (got.error !== undefined && refusedExt(got.error, bytes)) {
      // Never a plain scalar: those the router does send.
      report(name, !['int', 'float', 'str', 'nil', 'bool'].includes(e.decoded && e.decoded[0]), got.error);
    } else if (typeof e.decoded === 'object' && !Array.isArray(e.decoded)) {
      // The package refused to read it back: no expectation but a clean answer.
      report(name, true);
    } else {
      const mine = got.error === undefined ? typed(got.value) : null;
      // A package reads a float with an integral value as an integer: so does JavaScript.
      report(name, mine !== null && JSON.stringify(mine) === JSON.stringify(e.decoded),
        got.error || JSON.stringify(mine));
    }
  }
}

// Every client frame the packages write decodes to a 5-element array (ext-typed ones refused).
for (const v of vectors.client) {
  for (const [encoder, e] of Object.entries(v.encodings)) {
    if (e.hex === undefined) continue;
    const bytes = hex(e.hex);
    const got = attempt(bytes);
    report(`client: ${v.name} (${encoder})`, refusedExt(got.error, bytes) || Array.isArray(got.value),
      got.error || json(got.value));
  }
}

// The malformed messages of the vectors: those malformed as MessagePack are refused.
for (const v of vectors.invalid) {
  if (!['trailing bytes', 'truncated', 'empty message'].includes(v.name)) continue;
  for (const [encoder, e] of Object.entries(v.encodings)) {
    const got = attempt(hex(e.hex));
    report(`invalid: ${v.name} (${encoder})`, got.error !== undefined, json(got.value));
  }
}

// Hand-made cases.
const cases = [
  ['str32', 'db00000003616263', 'abc'],
  ['array32', 'dd000000020102', [1, 2]],
  ['map32', 'df00000001a161c3', { a: true }],
  ['bin8', 'c403010203', Uint8Array.from([1, 2, 3])],
  ['bin32', 'c60000000100', Uint8Array.from([0])],
  ['uint64 above 2^53 as a BigInt', 'cf0020000000000002', 9007199254740994n],
  ['int64 -2^63 as a BigInt', 'd38000000000000000', -9223372036854775808n],
  ['float32', 'ca3fc00000', 1.5],
  ['nested map in an array', '9181a1789190', [{ x: [[]] }]],
  ['__proto__ is a plain key', '81a95f5f70726f746f5f5f01', null],
];
for (const [name, h, want] of cases) {
  const got = attempt(hex(h));
  let ok;
  if (name.startsWith('__proto__')) {
    ok = got.value !== undefined && Object.getPrototypeOf(got.value) === null
      && got.value.__proto__ === 1 && ({}).polluted === undefined;
  } else if (want instanceof Uint8Array) {
    ok = got.value instanceof Uint8Array && Buffer.from(got.value).equals(Buffer.from(want));
  } else {
    ok = got.value !== undefined && json(got.value) === json(want) && typeof got.value === typeof want;
  }
  report(`hand-made: ${name}`, ok, got.error || json(got.value));
}
const refusals = [
  ['fixext1 (notepack undefined)', 'd40000'],
  ['fixext8 (notepack Date)', 'd7000000018c57de4887'],
  ['timestamp32', 'd6ff00000000'],
  ['ext8', 'c70100ff'],
  ['ext16', 'c8000100ff'],
  ['ext32', 'c900000001 00ff'.replace(' ', '')],
  ['ext inside a map', '81a161d40000'],
  ['0xc1', 'c1'],
  ['trailing byte', 'c0c0'],
  ['truncated uint32', 'ce0001'],
  ['truncated str8', 'd905616263'],
  ['array32 longer than the bytes', 'ddffffffff'],
  ['invalid UTF-8', 'a2c328'],
  ['a map as a key', '8180c0'],
  ['empty input', ''],
  ['nested 65 deep', '91'.repeat(65) + 'c0'],
];
for (const [name, h] of refusals) {
  const got = attempt(hex(h));
  report(`refused: ${name}`, got.error !== undefined, json(got.value));
}
const deep = attempt(hex('91'.repeat(64) + 'c0'));
report('hand-made: nested 64 deep', deep.value !== undefined, deep.error);

process.stdout.write(`${JSON.stringify({ case: 'summary', passed, failed })}\n`);
process.exit(failed === 0 ? 0 : 1);
