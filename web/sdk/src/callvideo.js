// @ts-check
/**
 * Seed 002's audio <-> video changes of a call (`call.upgrade()`, `downgrade()`,
 * `acceptModification()`, `rejectModification()`): a re-offer of the call's media and the
 * `call.modify*` requests of docs/protocol.md. The Call's methods of those names call these;
 * the far party's request arrives as the call's `media-modification(newMediaType)` event and
 * waits in `call.pendingModification` until accepted or rejected.
 * @module
 */

import { CallbridgeError, ClientCode } from "./errors.js";

/** @typedef {import("./call.js").Call} Call */

/** @param {Call} call @param {string} what */
function modifiable(call, what) {
  if (call.state !== "active" || !call.media) {
    throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${call.id} is ${call.state}: ${what} needs an active call`,
      { object: "call", method: what, callId: call.id });
  }
  if (call.pendingModification) {
    throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${call.id}: answer the far party's media modification first`,
      { object: "call", method: what, callId: call.id });
  }
  return call.media;
}

/** Ask to make an audio call a video call. @param {Call} call */
export async function upgrade(call) {
  const media = modifiable(call, "upgrade");
  if (call.mediaType === "video") {
    throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${call.id} is a video call already`);
  }
  const sdp = await media.reoffer(true);
  await call._request("call.modify", { media_type: "video", sdp });
}

/** Make a video call an audio call. @param {Call} call */
export async function downgrade(call) {
  const media = modifiable(call, "downgrade");
  if (call.mediaType !== "video") {
    throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${call.id} is an audio call already`);
  }
  const sdp = await media.reoffer(false);
  await call._request("call.modify", { media_type: "audio", sdp });
}

/** @param {Call} call @param {string} what */
function takeModification(call, what) {
  const pending = call.pendingModification;
  if (!pending || !call.media) {
    throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${call.id}: no media modification to ${what}`);
  }
  call.pendingModification = null;
  return { media: call.media, pending };
}

/** Accept the far party's upgrade or downgrade. @param {Call} call */
export async function acceptModification(call) {
  const { media, pending } = takeModification(call, "accept");
  const video = pending.new_media_type === "video";
  const sdp = await media.answerReoffer(String(pending.sdp ?? ""), video, video);
  await call._request("call.modify.accept", { sdp });
}

/**
 * Reject it: an upgrade then brings the far party's video to us, but we send none; a
 * downgrade ends video anyway.
 * @param {Call} call
 */
export async function rejectModification(call) {
  const { media, pending } = takeModification(call, "reject");
  const upgrade = pending.new_media_type === "video";
  const sdp = await media.answerReoffer(String(pending.sdp ?? ""), false, upgrade);
  await call._request("call.modify.reject", { sdp });
}
