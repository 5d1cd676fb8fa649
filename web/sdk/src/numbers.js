// @ts-check
/**
 * Phone numbers and caller URIs: seed 002's `cleanPhoneNumber`, `formatNumber` and
 * `getCallerInfo`, as pure functions (also methods of the Phone). The same rules as the
 * Python SDK's callbridge/client/numbers.py.
 * @module
 */

import { CallbridgeError, ClientCode } from "./errors.js";

const KEYPAD = /** @type {Record<string, string>} */ ({});
for (const [digit, letters] of Object.entries({ 2: "ABC", 3: "DEF", 4: "GHI", 5: "JKL", 6: "MNO", 7: "PQRS", 8: "TUV", 9: "WXYZ" })) {
  for (const l of letters) KEYPAD[l] = digit;
}
const SEPARATORS = /[\s\-.()]/g;
const KEYS = /^[0-9A-Za-z*#]+$/;
const EMAIL = /^[^@\s]+@[^@\s]+$/;
const NANP = /^(?:\+?1)?([0-9]{3})([0-9]{3})([0-9]{4})$/;

/** @param {unknown} value @param {string} what @returns {string} */
function requireString(value, what) {
  if (typeof value !== "string") {
    throw new CallbridgeError(ClientCode.INVALID_ARGUMENT, `${what} must be a string, not ${typeof value}`);
  }
  return value;
}

/**
 * The digits a keypad would dial (seed 002 `cleanPhoneNumber`): letters become digits,
 * separators go, a leading `+`, `*` and `#` stay; email-formatted input is returned as is.
 * @param {string} number
 * @returns {string|false} false when it cannot be a phone number (as the seed)
 */
export function cleanPhoneNumber(number) {
  const text = requireString(number, "number").trim();
  if (EMAIL.test(text)) return text;
  const plus = text.startsWith("+");
  const keys = (plus ? text.slice(1) : text).replace(SEPARATORS, "");
  if (!KEYS.test(keys)) return false;
  const digits = keys.toUpperCase().replace(/[A-Z]/g, (c) => KEYPAD[c]);
  if (plus) return /^[0-9]+$/.test(digits) ? `+${digits}` : false;
  return digits;
}

/**
 * A number formatted for display (seed 002 `formatNumber`): North American numbers as
 * `1 (923) 456-7890`, anything else cleaned.
 * @param {string} number
 * @returns {string}
 */
export function formatNumber(number) {
  const cleaned = cleanPhoneNumber(number);
  if (cleaned === false) {
    throw new CallbridgeError(ClientCode.INVALID_ARGUMENT,
      `not a phone number: ${JSON.stringify(number)}; use digits, keypad letters, separators (space - . ( )), a leading + and * or #`);
  }
  const m = NANP.exec(cleaned);
  return m ? `1 (${m[1]}) ${m[2]}-${m[3]}` : cleaned;
}

/**
 * The E.164 form of a North American number (`+14155551234`), or the cleaned input.
 * @param {string} number
 */
export function toE164(number) {
  const cleaned = cleanPhoneNumber(number);
  if (cleaned === false) return number;
  const m = NANP.exec(cleaned);
  return m ? `+1${m[1]}${m[2]}${m[3]}` : cleaned;
}

/**
 * @typedef {object} CallerInfo
 * @property {string} protocol "sip", "sips", "tel", or "" for a bare number or user@host
 * @property {string} callerId
 * @property {string} domain
 * @property {number|null} port
 * @property {Record<string, string>} parameters
 * @property {string} displayName
 */

const NAME_ADDR = /^(?:"((?:[^"\\]|\\.)*)"|([^"<>]*?))\s*<([^<>]*)>\s*(.*)$/s;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.\-]*):(.*)$/s;
const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9\-_]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-_]+)*\.?$/;
const HOSTPORT = /^(\[[^\]]*\]|[^:[\]]*)(?::([^:]*))?$/;
const FORBIDDEN = /[\s<>"]/;
const EXPECTED = 'expected sip:user@host[:port][;params], sips:…, tel:+number[;params], "Name" <sip:…>, or a bare number or user@host';

/** @param {string} uri @param {string} why */
const bad = (uri, why) => new CallbridgeError(ClientCode.INVALID_ARGUMENT, `not a caller URI: ${JSON.stringify(uri)}: ${why}; ${EXPECTED}`);

/** @param {string} text @returns {[string, Record<string, string>]} */
function splitParams(text) {
  const [head, ...segments] = text.split(";");
  /** @type {Record<string, string>} */ const params = {};
  for (const segment of segments) {
    if (!segment) continue;
    const i = segment.indexOf("=");
    const name = i < 0 ? segment : segment.slice(0, i);
    params[decodeURIComponent(name).toLowerCase()] = i < 0 ? "" : decodeURIComponent(segment.slice(i + 1));
  }
  return [head, params];
}

/**
 * Take a caller URI apart (seed 002 `getCallerInfo`), e.g. a call's `from`.
 * @param {string} uri
 * @returns {CallerInfo}
 */
export function getCallerInfo(uri) {
  let text = requireString(uri, "uri").trim();
  if (!text) throw new CallbridgeError(ClientCode.INVALID_ARGUMENT, `the caller URI is empty; ${EXPECTED}`);
  let displayName = "";
  const na = NAME_ADDR.exec(text);
  if (na) {
    const rest = na[4];
    if (rest && !rest.startsWith(";")) throw bad(uri, `unexpected ${JSON.stringify(rest)} after '>'`);
    displayName = na[1] !== undefined ? na[1].replace(/\\(.)/g, "$1") : (na[2] ?? "").split(/\s+/).filter(Boolean).join(" ");
    text = na[3].trim();
    if (!text) throw bad(uri, "nothing between '<' and '>'");
  }
  if (FORBIDDEN.test(text)) throw bad(uri, 'spaces and <>" are only allowed in a display name');
  const scheme = SCHEME.exec(text);
  if (scheme) {
    const protocol = scheme[1].toLowerCase();
    if (!["sip", "sips", "tel"].includes(protocol)) throw bad(uri, `unsupported scheme ${JSON.stringify(scheme[1])}`);
    if (protocol === "tel") {
      const [number, params] = splitParams(scheme[2]);
      return telInfo(uri, number, params, displayName, "tel");
    }
    return sipInfo(uri, protocol, scheme[2], displayName);
  }
  if (text.includes("@")) return sipInfo(uri, "", text, displayName);
  const [number, params] = splitParams(text);
  return telInfo(uri, number, params, displayName, "");
}

/** @param {string} uri @param {string} number @param {Record<string,string>} params @param {string} displayName @param {string} protocol */
function telInfo(uri, number, params, displayName, protocol) {
  const decoded = decodeURIComponent(number);
  const callerId = protocol ? decoded.replace(/[\-.()]/g, "") : decoded;
  if (!callerId) throw bad(uri, "no number");
  return { protocol, callerId, domain: "", port: null, parameters: params, displayName };
}

/** @param {string} uri @param {string} protocol @param {string} rest @param {string} displayName */
function sipInfo(uri, protocol, rest, displayName) {
  const at = rest.indexOf("@");
  const userinfo = at < 0 ? "" : rest.slice(0, at);
  const hostpart = at < 0 ? rest : rest.slice(at + 1);
  const user = decodeURIComponent(userinfo.split(":")[0]);
  if (at >= 0 && !user) throw bad(uri, "an empty user before '@'");
  const [hostport, params] = splitParams(hostpart.split("?")[0]);
  const m = HOSTPORT.exec(hostport);
  if (!m) throw bad(uri, `${JSON.stringify(hostport)} is not host[:port]`);
  const host = m[1];
  if (!host) throw bad(uri, "no host");
  if (host.startsWith("[")) {
    if (!/^\[[0-9A-Fa-f:.]+\]$/.test(host)) throw bad(uri, `${host} is not an IPv6 address`);
  } else if (!HOSTNAME.test(host)) throw bad(uri, `${JSON.stringify(host)} is not a host name or IP address`);
  let port = null;
  if (m[2] !== undefined) {
    if (!/^[0-9]+$/.test(m[2]) || Number(m[2]) < 1 || Number(m[2]) > 65535) throw bad(uri, `port ${JSON.stringify(m[2])} is not a number from 1 to 65535`);
    port = Number(m[2]);
  }
  return { protocol, callerId: user, domain: host, port, parameters: params, displayName };
}
