/**
 * How the panel's sections reload by themselves. Every timer here is a Lumino `Poll`:
 * the registry's auto-refresh, the Jobs section's close follow of running jobs, and the
 * retry of a store that cannot be reached ({@link StoreRetry}).
 */
import { Poll } from '@lumino/polling';

import { ApiError } from '../api';

/** How often a visible panel refreshes itself, in milliseconds. */
export const AUTO_REFRESH_MS = 30_000;

/** The first automatic retry of a store that cannot be reached, in milliseconds (a setting). */
export const RETRY_FIRST_MS = 5_000;
/** Automatic retries double their wait up to this, in milliseconds. */
export const RETRY_MAX_MS = 30_000;

/**
 * Retries a section's load by itself while the store (or the Jupyter server) cannot be
 * reached: first after 5 s, then waiting twice as long each time up to 30 s, only while
 * the panel is shown; the first answer ends it. The registry and the Jobs section each
 * own one and tell it how every load ended.
 *
 * A Lumino `Poll` keeps the time. Its own backoff picks a random wait between the
 * interval and twice the last one; here the panel tells a person when the next try is
 * and the setting promises "twice as long each time", so each wait is computed here and
 * handed to the poll as the interval of its next tick.
 */
export class StoreRetry {
  /**
   * @param load reloads the section quietly; it reports its outcome through `note`
   * @param changed tells the views that `due` changed
   */
  constructor(
    private readonly _load: () => Promise<void>,
    private readonly _changed: () => void
  ) {
    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      // Between retries the poll rests: only `_schedule` plans a tick.
      frequency: { interval: Poll.NEVER, backoff: false, max: Poll.NEVER },
      name: 'mlops-nb:store-retry',
      standby: 'never'
    });
  }

  /** When the next automatic retry is due; null when none is planned. */
  get due(): Date | null {
    return this._due;
  }

  /** Wait before the first retry in milliseconds (0: no automatic retries). */
  set firstDelay(ms: number) {
    this._first = Math.max(0, ms);
    this._delay = this._first;
    if (this._first === 0) {
      this._cancel();
    }
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** How loads ended: one that found the store unreachable plans the next retry, any other outcome ends retrying. */
  note(...errors: (ApiError | null)[]): void {
    this._failing = errors.some(e => e?.kind === 'unreachable');
    if (this._failing) {
      this._schedule();
    } else {
      this._cancel();
      this._delay = this._first;
    }
  }

  /** Retries wait while the panel is hidden; showing it again retries soon. */
  setVisible(visible: boolean): void {
    this._visible = visible;
    this._cancel();
    if (visible && this._failing) {
      this._delay = this._first;
      this._schedule();
    }
  }

  dispose(): void {
    this._poll.dispose();
  }

  private async _tick(): Promise<void> {
    this._due = null;
    await this._load().catch(() => undefined);
  }

  private _schedule(): void {
    if (this._due !== null || !this._visible || this._first === 0 || this.isDisposed) {
      return; // one retry at a time: a failed refresh meanwhile does not add one
    }
    const wait = this._delay;
    this._delay = Math.min(2 * wait, Math.max(RETRY_MAX_MS, this._first));
    this._due = new Date(Date.now() + wait);
    void this._poll.schedule({ interval: wait, phase: 'rejected' });
    this._changed();
  }

  private _cancel(): void {
    if (this._due !== null) {
      void this._poll.stop();
      this._due = null;
      this._changed();
    }
  }

  private readonly _poll: Poll;
  private _first = RETRY_FIRST_MS;
  private _delay = RETRY_FIRST_MS;
  private _due: Date | null = null;
  private _visible = false;
  private _failing = false;
}
