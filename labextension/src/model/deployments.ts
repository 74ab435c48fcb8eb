/**
 * The Deployments section's state: the project's model servers with what each serves
 * and its live numbers, which server is being stopped, and what went wrong.
 */
import { VDomModel } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';

import { ApiError, fetchDeployments, stopDeployment } from '../api';
import { IDeployment, IRefreshable } from '../tokens';
import { AUTO_REFRESH_MS } from './polling';

/** How often the list is re-read while it shows a server (its numbers move), in milliseconds. */
export const DEPLOYMENTS_REFRESH_MS = 5_000;

/** How often the list looks for a new server while it shows none, in milliseconds. */
export const NO_DEPLOYMENTS_REFRESH_MS = 15_000;

/**
 * The Deployments section: the project's model servers, re-read every few seconds
 * while the panel is shown (each read asks every server for its /health, so the
 * numbers are live), less often while there is none; refreshed with the registry too
 * (the panel's refresh button and its first show).
 */
export class DeploymentsModel extends VDomModel implements IRefreshable {
  constructor() {
    super();
    // Hidden panel or browser tab: no reads. A failing read backs off up to the
    // registry's auto-refresh interval.
    this._poll = new Poll({
      auto: true,
      factory: () => this.refresh({ quiet: true }),
      frequency: this._frequency(),
      name: 'mlops-nb:deployments',
      standby: () => (this._visible ? 'when-hidden' : true)
    });
  }

  get deployments(): IDeployment[] {
    return this._deployments;
  }
  /** Nothing has been loaded yet. */
  get loading(): boolean {
    return this._loading;
  }
  get error(): ApiError | null {
    return this._error;
  }
  /** When the list was last read. */
  get refreshedAt(): Date | null {
    return this._refreshedAt;
  }
  /** Whether the server `id` is being stopped right now (its Stop button waits). */
  stopping(id: string): boolean {
    return this._stopping.has(id);
  }

  setVisible(visible: boolean): void {
    this._visible = visible;
  }

  /** Re-read the servers; `quiet` keeps what is shown until the answer arrives and throws a failure (the poll backs off). */
  async refresh(options: { quiet?: boolean } = {}): Promise<void> {
    const ticket = ++this._ticket;
    if (!options.quiet && !this._loaded) {
      this._loading = true;
      this.stateChanged.emit();
    }
    try {
      const answer = await fetchDeployments();
      if (ticket !== this._ticket) {
        return; // a newer refresh answered first
      }
      this._deployments = sortDeployments(answer.deployments);
      this._error = null;
      this._refreshedAt = new Date();
    } catch (error) {
      if (ticket !== this._ticket) {
        return;
      }
      this._error = ApiError.from(error);
    }
    this._loaded = true;
    this._loading = false;
    this._poll.frequency = this._frequency();
    this.stateChanged.emit();
    if (this._error && options.quiet) {
      throw this._error;
    }
  }

  /** Stop the server `id`; resolves with its announcement once it has exited. */
  async stop(id: string): Promise<IDeployment> {
    this._stopping.add(id);
    this.stateChanged.emit();
    try {
      return await stopDeployment(id);
    } finally {
      this._stopping.delete(id);
      // What is shown is what runs: re-read after every stop, done or not.
      await this.refresh({ quiet: true }).catch(() => undefined);
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    super.dispose();
  }

  private _frequency(): { interval: number; backoff: boolean; max: number } {
    const interval = this._deployments.length ? DEPLOYMENTS_REFRESH_MS : NO_DEPLOYMENTS_REFRESH_MS;
    return { interval, backoff: true, max: Math.max(interval, AUTO_REFRESH_MS) };
  }

  private _deployments: IDeployment[] = [];
  private _loading = false;
  private _loaded = false;
  private _error: ApiError | null = null;
  private _refreshedAt: Date | null = null;
  private _stopping = new Set<string>();
  private _ticket = 0;
  private _visible = false;
  private _poll: Poll;
}

/** Servers by model name, then alias, then port: a list that does not reorder as numbers move. */
export function sortDeployments(deployments: IDeployment[]): IDeployment[] {
  const key = (d: IDeployment) => [d.name ?? d.model, d.alias ?? '', String(d.port ?? 0).padStart(6, '0'), d.id];
  return deployments.slice().sort((a, b) => {
    const [ka, kb] = [key(a), key(b)];
    const i = ka.findIndex((part, n) => part !== kb[n]);
    return i < 0 ? 0 : ka[i] < kb[i] ? -1 : 1;
  });
}
