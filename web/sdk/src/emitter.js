// @ts-check
/**
 * A small event emitter: `on`, `once`, `off`, `emit`. A handler that throws does not stop
 * the others; its exception goes to `console.error` (and, on the phone, to the `error`
 * event), because a UI bug must not break the call's signalling.
 * @module
 */

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
  }

  /**
   * @param {string} name
   * @param {Function} handler
   * @returns {this}
   */
  on(name, handler) {
    let set = this._handlers.get(name);
    if (!set) this._handlers.set(name, (set = new Set()));
    set.add(handler);
    return this;
  }

  /** @param {string} name @param {Function} handler @returns {this} */
  once(name, handler) {
    const wrapper = (/** @type {any[]} */ ...args) => {
      this.off(name, wrapper);
      return handler(...args);
    };
    return this.on(name, wrapper);
  }

  /** @param {string} name @param {Function} [handler] @returns {this} */
  off(name, handler) {
    if (!handler) this._handlers.delete(name);
    else this._handlers.get(name)?.delete(handler);
    return this;
  }

  /** Alias of on() for EventTarget-style code. */
  addEventListener(/** @type {string} */ name, /** @type {Function} */ handler) {
    return this.on(name, handler);
  }

  removeEventListener(/** @type {string} */ name, /** @type {Function} */ handler) {
    return this.off(name, handler);
  }

  /**
   * @param {string} name
   * @param {...any} args
   * @returns {boolean} whether any handler ran
   */
  emit(name, ...args) {
    const set = this._handlers.get(name);
    /** @type {any} */ const self = this;
    const prop = self[`on${name}`];  // seed 000 style: group.oncallschanged = fn
    if (!set && typeof prop !== "function") return false;
    for (const handler of [...(set ?? []), ...(typeof prop === "function" ? [prop] : [])]) {
      try {
        const result = handler.apply(this, args);
        if (result && typeof result.catch === "function") {
          result.catch((/** @type {any} */ e) => this._handlerFailed(name, e));
        }
      } catch (e) {
        this._handlerFailed(name, e);
      }
    }
    return true;
  }

  /** @param {string} name @param {unknown} error @protected */
  _handlerFailed(name, error) {
    console.error(`callbridge: a '${name}' handler failed:`, error);
  }

  /**
   * A promise of the next `name` event's first argument.
   * @param {string} name
   * @param {number} [timeoutMs]
   * @returns {Promise<any>}
   */
  waitFor(name, timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off(name, handler);
        reject(new Error(`no '${name}' event within ${timeoutMs} ms`));
      }, timeoutMs);
      const handler = (/** @type {any} */ value) => {
        clearTimeout(timer);
        this.off(name, handler);
        resolve(value);
      };
      this.on(name, handler);
    });
  }
}
