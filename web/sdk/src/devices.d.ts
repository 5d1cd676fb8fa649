/**
 * Devices: listing microphones, speakers and cameras, an input level meter, and a pre-call
 * test (microphone level, then the media path to the server: a one-person conference whose
 * peer connection must connect and carry RTP both ways).
 * @module
 */
/** @returns {Promise<{microphones: MediaDeviceInfo[], speakers: MediaDeviceInfo[], cameras: MediaDeviceInfo[]}>} */
export function listDevices(): Promise<{
    microphones: MediaDeviceInfo[];
    speakers: MediaDeviceInfo[];
    cameras: MediaDeviceInfo[];
}>;
/**
 * @typedef {object} PreCallResult
 * @property {boolean} microphone getUserMedia gave an audio track
 * @property {number} inputLevelDb the loudest input level seen (dBFS)
 * @property {boolean} mediaConnected the peer connection to the server connected
 * @property {number} packetsSent RTP packets sent to the server
 * @property {number} packetsReceived RTP packets received from it
 * @property {number|null} roundTripMs ICE round trip to the server
 * @property {string[]} problems what failed, in words
 */
/**
 * Check the microphone and the media path before calling. Needs a logged-in phone.
 * @param {import("./conferencephone.js").ConferencePhone} phone
 * @param {{durationMs?: number, localStream?: MediaStream}} [options]
 * @returns {Promise<PreCallResult>}
 */
export function preCallTest(phone: import("./conferencephone.js").ConferencePhone, options?: {
    durationMs?: number;
    localStream?: MediaStream;
}): Promise<PreCallResult>;
/** The input level of a stream: `level` (RMS, 0..1) and `db` (dBFS), updated ~20 times a
 * second; `onLevel(level, db)` is called with each update. */
export class LevelMeter {
    /**
     * @param {MediaStream} stream
     * @param {{onLevel?: (level: number, db: number) => void, intervalMs?: number}} [options]
     */
    constructor(stream: MediaStream, options?: {
        onLevel?: (level: number, db: number) => void;
        intervalMs?: number;
    });
    ctx: AudioContext;
    source: MediaStreamAudioSourceNode;
    analyser: AnalyserNode;
    level: number;
    db: number;
    onLevel: (level: number, db: number) => void;
    _timer: number;
    stop(): void;
}
export type PreCallResult = {
    /**
     * getUserMedia gave an audio track
     */
    microphone: boolean;
    /**
     * the loudest input level seen (dBFS)
     */
    inputLevelDb: number;
    /**
     * the peer connection to the server connected
     */
    mediaConnected: boolean;
    /**
     * RTP packets sent to the server
     */
    packetsSent: number;
    /**
     * RTP packets received from it
     */
    packetsReceived: number;
    /**
     * ICE round trip to the server
     */
    roundTripMs: number | null;
    /**
     * what failed, in words
     */
    problems: string[];
};
