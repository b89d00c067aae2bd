// The dashboard's MessagePack reader: decodes what the router sends (protocol/PROTOCOL.md
// section 7), nothing more. Integers (fixint, uint8-64, int8-64; beyond 2^53 as a BigInt),
// float32/64, strings (fixstr, str8/16/32, strict UTF-8), binaries (bin8/16/32, as a
// Uint8Array), arrays and maps (fix, 16, 32; maps as objects without a prototype, keys as
// strings), nil, true, false. It refuses every ext type, the never-used 0xc1, truncated values,
// trailing bytes and nesting deeper than 64: the router sends none of these.
//
// Loaded by the page as a classic script (window.PresenceMsgpack) and by Node as a module
// (tests/browser.rs runs protocol/browser/msgpack-test.js on it).
(function (root) {
  'use strict';

  const MAX_DEPTH = 64;
  const utf8 = new TextDecoder('utf-8', { fatal: true });

  class DecodeError extends Error {}

  function decode(input) {
    let bytes;
    if (input instanceof ArrayBuffer) bytes = new Uint8Array(input);
    else if (input instanceof Uint8Array) bytes = input;
    else throw new DecodeError('decode takes an ArrayBuffer or a Uint8Array');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let at = 0;

    function need(n) {
      if (at + n > bytes.length) throw new DecodeError(`truncated MessagePack value at byte ${at}`);
      const start = at;
      at += n;
      return start;
    }
    function uint64(offset) {
      const high = view.getUint32(offset);
      const low = view.getUint32(offset + 4);
      const value = high * 4294967296 + low;
      return Number.isSafeInteger(value) ? value : (BigInt(high) << 32n) | BigInt(low);
    }
    function int64(offset) {
      const value = view.getBigInt64(offset);
      const small = Number(value);
      return Number.isSafeInteger(small) ? small : value;
    }
    function str(n) {
      const start = need(n);
      try {
        return utf8.decode(bytes.subarray(start, start + n));
      } catch (e) {
        throw new DecodeError(`invalid UTF-8 in a string at byte ${start}`);
      }
    }
    function bin(n) {
      const start = need(n);
      return bytes.slice(start, start + n);
    }
    function array(n, depth) {
      const out = new Array(n);
      for (let i = 0; i < n; i++) out[i] = value(depth + 1);
      return out;
    }
    function map(n, depth) {
      const out = Object.create(null);
      for (let i = 0; i < n; i++) {
        const key = value(depth + 1);
        if (typeof key === 'object' && key !== null) throw new DecodeError('a map key must be a string or a number');
        out[String(key)] = value(depth + 1);
      }
      return out;
    }

    function value(depth) {
      if (depth > MAX_DEPTH) throw new DecodeError(`nested deeper than ${MAX_DEPTH}`);
      const b = bytes[need(1)];
      if (b <= 0x7f) return b;
      if (b >= 0xe0) return b - 0x100;
      if (b >= 0xa0 && b <= 0xbf) return str(b & 0x1f);
      if (b >= 0x90 && b <= 0x9f) return array(b & 0x0f, depth);
      if (b >= 0x80 && b <= 0x8f) return map(b & 0x0f, depth);
      switch (b) {
        case 0xc0: return null;
        case 0xc2: return false;
        case 0xc3: return true;
        case 0xc4: return bin(bytes[need(1)]);
        case 0xc5: return bin(view.getUint16(need(2)));
        case 0xc6: return bin(view.getUint32(need(4)));
        case 0xca: return view.getFloat32(need(4));
        case 0xcb: return view.getFloat64(need(8));
        case 0xcc: return bytes[need(1)];
        case 0xcd: return view.getUint16(need(2));
        case 0xce: return view.getUint32(need(4));
        case 0xcf: return uint64(need(8));
        case 0xd0: return view.getInt8(need(1));
        case 0xd1: return view.getInt16(need(2));
        case 0xd2: return view.getInt32(need(4));
        case 0xd3: return int64(need(8));
        case 0xd9: return str(bytes[need(1)]);
        case 0xda: return str(view.getUint16(need(2)));
        case 0xdb: return str(view.getUint32(need(4)));
        case 0xdc: return array(view.getUint16(need(2)), depth);
        case 0xdd: return array(view.getUint32(need(4)), depth);
        case 0xde: return map(view.getUint16(need(2)), depth);
        case 0xdf: return map(view.getUint32(need(4)), depth);
        case 0xc1: throw new DecodeError('0xc1 is never used in MessagePack');
        default:
          // 0xc7-0xc9 and 0xd4-0xd8: ext types, which the router never sends.
          throw new DecodeError(`ext type 0x${b.toString(16)} at byte ${at - 1} is not accepted`);
      }
    }

    const result = value(0);
    if (at !== bytes.length) throw new DecodeError(`${bytes.length - at} trailing bytes after the value`);
    return result;
  }

  const api = { decode, DecodeError };
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.PresenceMsgpack = api;
})(typeof self !== 'undefined' ? self : this);
