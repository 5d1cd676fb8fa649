/**
 * The digits a keypad would dial (seed 002 `cleanPhoneNumber`): letters become digits,
 * separators go, a leading `+`, `*` and `#` stay; email-formatted input is returned as is.
 * @param {string} number
 * @returns {string|false} false when it cannot be a phone number (as the seed)
 */
export function cleanPhoneNumber(number: string): string | false;
/**
 * A number formatted for display (seed 002 `formatNumber`): North American numbers as
 * `1 (923) 456-7890`, anything else cleaned.
 * @param {string} number
 * @returns {string}
 */
export function formatNumber(number: string): string;
/**
 * The E.164 form of a North American number (`+14155551234`), or the cleaned input.
 * @param {string} number
 */
export function toE164(number: string): string;
/**
 * Take a caller URI apart (seed 002 `getCallerInfo`), e.g. a call's `from`.
 * @param {string} uri
 * @returns {CallerInfo}
 */
export function getCallerInfo(uri: string): CallerInfo;
export type CallerInfo = {
    /**
     * "sip", "sips", "tel", or "" for a bare number or user@host
     */
    protocol: string;
    callerId: string;
    domain: string;
    port: number | null;
    parameters: Record<string, string>;
    displayName: string;
};
