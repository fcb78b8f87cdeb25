// The single-file browser bundle: `window.Switchboard` is the client class itself, as
// `window.Pusher` is pusher-js's; the helpers hang off it.
import Switchboard, { backoffDelay, closeAction, PositionTracker } from './index';

export default Object.assign(Switchboard, { Switchboard, backoffDelay, closeAction, PositionTracker });
