/**
 * The Jobs section's state: the schedules (and whether this server runs them), the
 * recent job runs, what is being done to a schedule, and what went wrong.
 */
import { VDomModel } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';

import { ApiError, fetchJobs, fetchSchedules, runNow, setPaused } from '../api';
import { IJobRecord, IJobRow, IRefreshable, ISchedule, ISchedulerInfo } from '../tokens';
import { AUTO_REFRESH_MS, StoreRetry } from './polling';

/** Job statuses that will still change: the list follows them closely. */
const ACTIVE_STATUSES = new Set(['RUNNING', 'STARTING', 'RETRYING']);

/** How often the jobs list is re-read while a job it shows is running, in milliseconds. */
export const ACTIVE_JOBS_REFRESH_MS = 2_000;

/**
 * The Jobs section's state: the schedules (and whether this server runs them), the
 * recent job runs, what is being done to a schedule, and what went wrong.
 */
export class JobsModel extends VDomModel implements IRefreshable {
  readonly jobsLimit: number;

  constructor(options: { jobsLimit?: number } = {}) {
    super();
    this.jobsLimit = options.jobsLimit ?? 30;
    // While a job runs, follow it closely (status, duration) without waiting for the
    // panel's auto-refresh; idle otherwise.
    this._follow = new Poll({
      auto: true,
      factory: () => this.refresh({ quiet: true }),
      frequency: { interval: ACTIVE_JOBS_REFRESH_MS, backoff: true, max: AUTO_REFRESH_MS },
      name: 'mlops-nb:active-jobs',
      standby: () => (this._visible && this.hasActiveJobs ? 'when-hidden' : true)
    });
    this.retry = new StoreRetry(
      () => this.refresh({ quiet: true }),
      () => this.stateChanged.emit()
    );
  }

  /** Retries schedules and jobs by themselves while their stores cannot be reached. */
  readonly retry: StoreRetry;

  get schedules(): ISchedule[] {
    return this._schedules;
  }
  get scheduler(): ISchedulerInfo | null {
    return this._scheduler;
  }
  get jobs(): IJobRow[] {
    return this._jobs;
  }
  /** Nothing has been loaded yet. */
  get loading(): boolean {
    return this._loading;
  }
  get schedulesError(): ApiError | null {
    return this._schedulesError;
  }
  get jobsError(): ApiError | null {
    return this._jobsError;
  }
  get hasActiveJobs(): boolean {
    return this._jobs.some(j => ACTIVE_STATUSES.has(j.status));
  }
  /** What is being done to a schedule right now, to disable its buttons meanwhile. */
  busy(name: string): 'run' | 'pause' | 'resume' | undefined {
    return this._busy.get(name);
  }

  setVisible(visible: boolean): void {
    this._visible = visible;
    this.retry.setVisible(visible);
  }

  /** Reload schedules and jobs; `quiet` keeps what is shown until the answers arrive. */
  async refresh(options: { quiet?: boolean } = {}): Promise<void> {
    const ticket = ++this._ticket;
    if (!options.quiet && !this._loaded) {
      this._loading = true;
      this.stateChanged.emit();
    }
    const [schedules, jobs] = await Promise.allSettled([fetchSchedules(), fetchJobs(this.jobsLimit)]);
    if (ticket !== this._ticket) {
      return; // a newer refresh answered first
    }
    if (schedules.status === 'fulfilled') {
      this._schedules = schedules.value.schedules;
      this._scheduler = schedules.value.scheduler;
      this._schedulesError = null;
    } else {
      this._schedulesError = ApiError.from(schedules.reason);
    }
    if (jobs.status === 'fulfilled') {
      this._jobs = jobs.value.jobs;
      this._jobsError = null;
    } else {
      this._jobsError = ApiError.from(jobs.reason);
    }
    this._loaded = true;
    this._loading = false;
    this.retry.note(this._schedulesError, this._jobsError);
    this.stateChanged.emit();
    const error = this._schedulesError ?? this._jobsError;
    if (error && options.quiet) {
      throw error; // lets the polls back off
    }
  }

  /** Run a schedule's target now (in the server); resolves with the job's record. */
  async runNow(name: string): Promise<IJobRecord> {
    return this._act(name, 'run', () => runNow(name));
  }

  /** Pause or resume a schedule; resolves with the schedule as stored now. */
  async setPaused(name: string, paused: boolean): Promise<ISchedule> {
    return this._act(name, paused ? 'pause' : 'resume', () => setPaused(name, paused));
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._follow.dispose();
    this.retry.dispose();
    super.dispose();
  }

  private async _act<T>(name: string, what: 'run' | 'pause' | 'resume', call: () => Promise<T>): Promise<T> {
    this._busy.set(name, what);
    this.stateChanged.emit();
    try {
      return await call();
    } finally {
      this._busy.delete(name);
      // What is shown is what is stored: re-read after every action, failed or not.
      await this.refresh({ quiet: true }).catch(() => undefined);
      if (this.hasActiveJobs) {
        void this._follow.refresh();
      }
    }
  }

  private _schedules: ISchedule[] = [];
  private _scheduler: ISchedulerInfo | null = null;
  private _jobs: IJobRow[] = [];
  private _loading = false;
  private _loaded = false;
  private _schedulesError: ApiError | null = null;
  private _jobsError: ApiError | null = null;
  private _busy = new Map<string, 'run' | 'pause' | 'resume'>();
  private _ticket = 0;
  private _visible = false;
  private _follow: Poll;
}
