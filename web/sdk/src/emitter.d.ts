/**
 * A small event emitter: `on`, `once`, `off`, `emit`. A handler that throws does not stop
 * the others; its exception goes to `console.error` (and, on the phone, to the `error`
 * event), because a UI bug must not break the call's signalling.
 * @module
 */
export class Emitter {
    /** @type {Map<string, Set<Function>>} */
    _handlers: Map<string, Set<Function>>;
    /**
     * @param {string} name
     * @param {Function} handler
     * @returns {this}
     */
    on(name: string, handler: Function): this;
    /** @param {string} name @param {Function} handler @returns {this} */
    once(name: string, handler: Function): this;
    /** @param {string} name @param {Function} [handler] @returns {this} */
    off(name: string, handler?: Function): this;
    /** Alias of on() for EventTarget-style code. */
    addEventListener(name: string, handler: Function): this;
    removeEventListener(name: string, handler: Function): this;
    /**
     * @param {string} name
     * @param {...any} args
     * @returns {boolean} whether any handler ran
     */
    emit(name: string, ...args: any[]): boolean;
    /** @param {string} name @param {unknown} error @protected */
    protected _handlerFailed(name: string, error: unknown): void;
    /**
     * A promise of the next `name` event's first argument.
     * @param {string} name
     * @param {number} [timeoutMs]
     * @returns {Promise<any>}
     */
    waitFor(name: string, timeoutMs?: number): Promise<any>;
}
