// @ts-check
/** Conferences (seed 002) and the call group (seed 000): being written. @module */
import { CallPhone } from "./callphone.js";

export class ConferencePhone extends CallPhone {}
