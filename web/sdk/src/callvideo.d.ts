/** Ask to make an audio call a video call. @param {Call} call */
export function upgrade(call: Call): Promise<void>;
/** Make a video call an audio call. @param {Call} call */
export function downgrade(call: Call): Promise<void>;
/** Accept the far party's upgrade or downgrade. @param {Call} call */
export function acceptModification(call: Call): Promise<void>;
/**
 * Reject it: an upgrade then brings the far party's video to us, but we send none; a
 * downgrade ends video anyway.
 * @param {Call} call
 */
export function rejectModification(call: Call): Promise<void>;
export type Call = import("./call.js").Call;
