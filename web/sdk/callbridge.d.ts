export { Phone } from "./src/phone.js";
export { Call } from "./src/call.js";
export { Emitter } from "./src/emitter.js";
export { VERSION } from "./src/version.js";
export { CallbridgeError, ClientCode } from "./src/errors.js";
export { cleanPhoneNumber, formatNumber, getCallerInfo, toE164 } from "./src/numbers.js";
export { CallGroup, Conference } from "./src/conference.js";
export { LevelMeter, listDevices, preCallTest } from "./src/devices.js";
