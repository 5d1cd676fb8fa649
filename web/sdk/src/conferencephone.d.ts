export class ConferencePhone extends CallPhone {
}
import { CallPhone } from "./callphone.js";
