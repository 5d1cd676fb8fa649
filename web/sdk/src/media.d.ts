/**
 * @typedef {object} MediaOptions
 * @property {RTCIceServer[]} iceServers
 * @property {RTCIceTransportPolicy} iceTransportPolicy
 * @property {() => Promise<MediaStream>} getLocalStream the microphone (or a given stream)
 * @property {(constraints?: MediaTrackConstraints|boolean) => Promise<MediaStream>} getVideoStream
 * @property {string|null} speakerId audio output device (setSinkId), null: the default
 * @property {(msg: Record<string, any>) => void} sendCandidate an `ice.candidate` / `ice.done`
 *   without `call_id` (the call adds it, or queues it until it has one)
 */
export class CallMedia {
    /** @param {MediaOptions} options */
    constructor(options: MediaOptions);
    options: MediaOptions;
    /** @type {RTCPeerConnection} */
    pc: RTCPeerConnection;
    /** @type {MediaStream|null} */ localStream: MediaStream | null;
    /** @type {MediaStream|null} */ localVideoStream: MediaStream | null;
    /** @type {MediaStream} */ remoteStream: MediaStream;
    /** @type {HTMLAudioElement|null} */ audioElement: HTMLAudioElement | null;
    /** @type {Record<string, any>[]} remote candidates that came before the SDP */
    _early: Record<string, any>[];
    _closed: boolean;
    muted: boolean;
    /** @type {((state: RTCPeerConnectionState) => void)|null} */
    onConnectionState: ((state: RTCPeerConnectionState) => void) | null;
    /** @type {((track: MediaStreamTrack) => void)|null} */
    onTrack: ((track: MediaStreamTrack) => void) | null;
    _newPeerConnection(): RTCPeerConnection;
    /** Play the remote audio on the chosen speaker (an Audio element, not in the DOM). */
    _play(): void;
    /** @param {string} deviceId */
    setSpeaker(deviceId: string): Promise<void>;
    _addLocalAudio(): Promise<void>;
    /**
     * @param {boolean} video also send and receive video
     * @returns {Promise<string>} our offer
     */
    offer(video?: boolean): Promise<string>;
    /**
     * Answer the server's offer.
     * @param {string} sdp the server's offer
     * @param {boolean} video send (and receive) video if the offer has it
     * @returns {Promise<string>} our answer
     */
    answer(sdp: string, video?: boolean): Promise<string>;
    /** @param {string} sdp the server's answer */
    acceptAnswer(sdp: string): Promise<void>;
    /** @param {Record<string, any>} msg an `ice.candidate` or `ice.done` from the server */
    addRemoteCandidate(msg: Record<string, any>): Promise<void>;
    _flushEarly(): Promise<void>;
    _videoTransceiver(): RTCRtpTransceiver;
    /** @param {RTCRtpTransceiverDirection} direction */
    _addVideo(direction: RTCRtpTransceiverDirection): Promise<RTCRtpTransceiver>;
    /** @param {RTCRtpTransceiver} transceiver */
    _sendVideo(transceiver: RTCRtpTransceiver): Promise<void>;
    /**
     * A new offer for this peer connection: video on (upgrade) or off (downgrade).
     * @param {boolean} video
     * @returns {Promise<string>}
     */
    reoffer(video: boolean): Promise<string>;
    /**
     * Answer a new offer of the server (a media modification).
     * @param {string} sdp
     * @param {boolean} send send our video
     * @param {boolean} receive receive the far party's video
     */
    answerReoffer(sdp: string, send: boolean, receive: boolean): Promise<string>;
    stopVideo(): void;
    /**
     * Replace the peer connection by a new one (media restart after a network change): the
     * same local stream, a fresh offer.
     * @returns {Promise<string>} the new offer
     */
    restart(): Promise<string>;
    /** @param {boolean} muted */
    setMuted(muted: boolean): void;
    /** Replace the microphone track on the live connection (another input device). */
    replaceAudio(stream: MediaStream): Promise<void>;
    /**
     * Replace the camera track on the live connection (another camera). Nothing is sent
     * until the call sends video; the new stream is then the one an upgrade uses.
     * @param {MediaStream} stream
     */
    replaceVideo(stream: MediaStream): Promise<boolean>;
    /** The audio RTCRtpSender (for insertDTMF). */
    get audioSender(): RTCRtpSender;
    /** Wait until the peer connection is connected. @param {number} [timeoutMs] */
    waitConnected(timeoutMs?: number): Promise<any>;
    close(): void;
}
export type MediaOptions = {
    iceServers: RTCIceServer[];
    iceTransportPolicy: RTCIceTransportPolicy;
    /**
     * the microphone (or a given stream)
     */
    getLocalStream: () => Promise<MediaStream>;
    getVideoStream: (constraints?: MediaTrackConstraints | boolean) => Promise<MediaStream>;
    /**
     * audio output device (setSinkId), null: the default
     */
    speakerId: string | null;
    /**
     * an `ice.candidate` / `ice.done`
     * without `call_id` (the call adds it, or queues it until it has one)
     */
    sendCandidate: (msg: Record<string, any>) => void;
};
