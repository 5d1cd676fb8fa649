// @ts-check
/**
 * callbridge-web: the browser SDK of callbridge (seed 001's Phone and Call, seed 002's Phone
 * methods and events, seed 000's call group) over the `/ws` protocol (docs/protocol.md).
 *
 *     import { Phone } from "/sdk/callbridge.js";
 *     const phone = new Phone({ url: "wss://pbx.example.com/ws", token });
 *     await phone.connect();
 *     const call = await phone.call("105");
 *     call.on("answered", () => console.log("talking"));
 *
 * No build step and no dependencies: this file re-exports the modules in ./src/.
 * @module
 */

export { Phone } from "./src/phone.js";
export { Call } from "./src/call.js";
export { CallbridgeError, ClientCode } from "./src/errors.js";
export { Emitter } from "./src/emitter.js";
export { cleanPhoneNumber, formatNumber, getCallerInfo, toE164 } from "./src/numbers.js";
export { VERSION } from "./src/version.js";
export { CallGroup, Conference } from "./src/conference.js";
export { LevelMeter, listDevices, preCallTest } from "./src/devices.js";
